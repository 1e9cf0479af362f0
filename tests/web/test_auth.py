"""Auth flows end to end over HTTP against the real server, Redis and PostgreSQL."""

from __future__ import annotations

import base64
import json
import time
import uuid

import httpx
import jwt

from tests.conftest import Server
from tests.support import Account, assert_error, register
from vaporform.config import Config


def _forge(config: Config, **overrides: object) -> str:
    """A token signed like ours, with some claim or header changed."""
    settings = config.jwt
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": str(uuid.uuid4()),
        "role": "user",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "iss": settings.issuer,
        "aud": settings.audience,
        "typ": "access",
    }
    headers = {"kid": overrides.pop("kid", settings.kid)}
    secret = str(overrides.pop("secret", settings.secret))
    claims.update(overrides)
    return jwt.encode(claims, secret, algorithm="HS256", headers=headers)


async def test_register_returns_the_contract_shape(http: httpx.AsyncClient, config: Config) -> None:
    response = await http.post(
        "/api/v1/auth/register",
        json={
            "email": "Shape-" + uuid.uuid4().hex[:8] + "@Example.com",
            "password": "x" * 12,
            "name": "Ada",
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"user", "access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == config.jwt.access_ttl_s == 900
    assert set(body["user"]) == {"id", "email", "name", "role"}
    assert body["user"]["role"] == "user"
    header = jwt.get_unverified_header(body["access_token"])
    assert header == {"alg": "HS256", "kid": "v1", "typ": "JWT"}
    claims = jwt.decode(
        body["access_token"], config.jwt.secret, algorithms=["HS256"], audience="vaporform-api"
    )
    assert claims["exp"] - claims["iat"] == 900
    assert claims["sub"] == body["user"]["id"]
    assert claims["jti"]


async def test_duplicate_email_is_refused_case_insensitively(http: httpx.AsyncClient) -> None:
    account = await register(http)
    response = await http.post(
        "/api/v1/auth/register",
        json={"email": account.email.upper(), "password": "y" * 12, "name": "Twin"},
    )
    assert_error(response, 409, "email_taken")


async def test_login_me_and_wrong_password(http: httpx.AsyncClient) -> None:
    account = await register(http)
    ok = await http.post(
        "/api/v1/auth/login", json={"email": account.email, "password": account.password}
    )
    assert ok.status_code == 200
    token = ok.json()["access_token"]
    me = await http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json() == {"id": account.id, "email": account.email, "name": "User", "role": "user"}

    wrong = await http.post(
        "/api/v1/auth/login", json={"email": account.email, "password": "not the password"}
    )
    assert_error(wrong, 401, "invalid_credentials")
    unknown = await http.post(
        "/api/v1/auth/login", json={"email": "nobody@example.com", "password": "whatever1"}
    )
    assert_error(unknown, 401, "invalid_credentials")


async def test_bad_tokens_are_rejected(http: httpx.AsyncClient, config: Config) -> None:
    account = await register(http)
    good = await http.get("/api/v1/auth/me", headers=account.headers)
    assert good.status_code == 200

    header, payload, signature = account.access_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    tampered_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT","kid":"v1"}').rstrip(b"=")
    now = int(time.time())
    bad_tokens = {
        "tampered": f"{header}.{tampered_payload}.{signature}",
        "alg none": f"{none_header.decode()}.{payload}.",
        "expired": _forge(config, sub=account.id, iat=now - 3600, nbf=now - 3600, exp=now - 60),
        "wrong audience": _forge(config, sub=account.id, aud="someone-else"),
        "wrong issuer": _forge(config, sub=account.id, iss="someone-else"),
        "wrong key id": _forge(config, sub=account.id, kid="v0"),
        "wrong secret": _forge(config, sub=account.id, secret="another-secret-" * 3),
        "not yet valid": _forge(config, sub=account.id, nbf=now + 3600),
        "not an access token": _forge(config, sub=account.id, typ="refresh"),
        "garbage": "not.a.jwt",
        "empty": "-",
    }
    for name, token in bad_tokens.items():
        response = await http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        error = assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), name
        assert error["message"], name
    no_header = await http.get("/api/v1/auth/me")
    assert_error(no_header, 401, "unauthorized")


async def test_refresh_rotates_and_reuse_revokes_the_family(http: httpx.AsyncClient) -> None:
    account = await register(http)
    first = await http.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refresh_token"] != account.refresh_token
    assert rotated["access_token"] != account.access_token

    # The spent token comes back: someone copied it. Its whole family dies.
    reuse = await http.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert_error(reuse, 401, "refresh_token_reused")
    newer = await http.post(
        "/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}
    )
    assert_error(newer, 401, "invalid_refresh_token")

    unknown = await http.post("/api/v1/auth/refresh", json={"refresh_token": "made-up"})
    assert_error(unknown, 401, "invalid_refresh_token")


async def test_refresh_families_are_independent(http: httpx.AsyncClient) -> None:
    account = await register(http)
    login = await http.post(
        "/api/v1/auth/login", json={"email": account.email, "password": account.password}
    )
    other_family = login.json()["refresh_token"]
    await http.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    await http.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    still_fine = await http.post("/api/v1/auth/refresh", json={"refresh_token": other_family})
    assert still_fine.status_code == 200


async def test_logout_revokes_access_at_once_and_the_refresh_family(
    http: httpx.AsyncClient,
) -> None:
    account = await register(http)
    response = await http.post(
        "/api/v1/auth/logout",
        json={"refresh_token": account.refresh_token},
        headers=account.headers,
    )
    assert response.status_code == 204
    assert response.content == b""
    me = await http.get("/api/v1/auth/me", headers=account.headers)
    assert_error(me, 401, "unauthorized")
    refresh = await http.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert_error(refresh, 401, "invalid_refresh_token")


async def test_logout_without_body_revokes_only_the_access_token(http: httpx.AsyncClient) -> None:
    account = await register(http)
    response = await http.post("/api/v1/auth/logout", headers=account.headers)
    assert response.status_code == 204
    assert (await http.get("/api/v1/auth/me", headers=account.headers)).status_code == 401
    refresh = await http.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert refresh.status_code == 200


async def test_ws_ticket_is_short_lived_and_single_use(
    http: httpx.AsyncClient, server: Server, config: Config
) -> None:
    account: Account = await register(http)
    response = await http.post("/api/v1/auth/ws-ticket", headers=account.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["expires_in"] == 30
    assert len(body["ticket"]) >= 32
    # Redeemed through the same store the WebSocket handshake uses.
    from web.services import EXTENSION_KEY

    store = server.app.extensions[EXTENSION_KEY].ephemeral
    first = await store.take("ticket:" + body["ticket"])
    assert first is not None
    assert json.loads(first)["user_id"] == account.id
    assert await store.take("ticket:" + body["ticket"]) is None
    unauthenticated = await http.post("/api/v1/auth/ws-ticket")
    assert_error(unauthenticated, 401, "unauthorized")
