"""MFA (TOTP) end to end over HTTP against the real server, Redis and PostgreSQL.

Codes come from pyotp with the secret the server handed out. The server accepts the current
30 s step and one either side, each step once: a test uses `totp.now()` for the first code of a
user and `_next_code` (one step ahead) for the second, which holds whichever step boundary the
test crosses; more logins in one test use recovery codes.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import unquote

import httpx
import pyotp
import pytest
import websockets

from tests.conftest import Server, api_client, serving
from tests.support import Account, assert_error, register
from vaporform.config import Config
from vaporform.settings.auth import MFASettings, RateLimits

MFA = "/api/v1/auth/mfa"
RECOVERY_CODE = re.compile(r"^[a-z2-9]{4}(-[a-z2-9]{4}){3}$")


def _next_code(totp: pyotp.TOTP) -> str:
    return totp.at(time.time() + totp.interval)


def _codes_near_now(totp: pyotp.TOTP, steps: int = 2) -> set[str]:
    now = time.time()
    return {totp.at(now + k * totp.interval) for k in range(-steps, steps + 1)}


def _code_outside_window(totp: pyotp.TOTP, steps: int) -> str:
    """The code of a step `steps` away from now, never equal to a code the server could
    accept (a 6-digit collision would make the test flaky, once in a million)."""
    near = _codes_near_now(totp)
    for extra in range(50):
        offset = steps + extra if steps > 0 else steps - extra
        code = totp.at(time.time() + offset * totp.interval)
        if code not in near:
            return code
    raise AssertionError("no code outside the window")


def _wrong_code(totp: pyotp.TOTP) -> str:
    near = _codes_near_now(totp)
    return next(f"{n:06d}" for n in range(123456, 1_000_000) if f"{n:06d}" not in near)


async def _enrol(http: httpx.AsyncClient, account: Account) -> pyotp.TOTP:
    response = await http.post(f"{MFA}/enrol", headers=account.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"secret", "otpauth_uri", "qr_svg"}
    uri = unquote(body["otpauth_uri"])
    assert uri.startswith("otpauth://totp/Vaporform:" + account.email)
    assert f"secret={body['secret']}" in uri
    assert "issuer=Vaporform" in uri
    assert body["qr_svg"].startswith("<svg")
    assert 'xmlns="http://www.w3.org/2000/svg"' in body["qr_svg"]
    return pyotp.TOTP(body["secret"])


async def _enable(
    http: httpx.AsyncClient, account: Account, *, confirming: list[str] | None = None
) -> tuple[pyotp.TOTP, list[str]]:
    """Enrol and confirm; the confirming code is appended to `confirming` when given."""
    totp = await _enrol(http, account)
    code = totp.now()
    if confirming is not None:
        confirming.append(code)
    response = await http.post(f"{MFA}/confirm", json={"code": code}, headers=account.headers)
    assert response.status_code == 200, response.text
    codes: list[str] = response.json()["recovery_codes"]
    return totp, codes


async def _enabled_totp(http: httpx.AsyncClient, account: Account) -> pyotp.TOTP:
    totp, _ = await _enable(http, account)
    return totp


async def _password_step(http: httpx.AsyncClient, account: Account) -> str:
    response = await http.post(
        "/api/v1/auth/login", json={"email": account.email, "password": account.password}
    )
    error = assert_error(response, 401, "mfa_required")
    assert set(error["details"]) == {"challenge", "expires_in"}
    challenge: str = error["details"]["challenge"]
    return challenge


async def _code_step(http: httpx.AsyncClient, challenge: str, code: str) -> httpx.Response:
    return await http.post(f"{MFA}/login", json={"challenge": challenge, "code": code})


async def _status(http: httpx.AsyncClient, account: Account) -> dict[str, Any]:
    response = await http.get(MFA, headers=account.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_enrol_confirm_and_log_in_in_two_steps(
    http: httpx.AsyncClient, config: Config
) -> None:
    account = await register(http, "mfa")
    assert await _status(http, account) == {
        "enabled": False,
        "pending": False,
        "recovery_codes_remaining": 0,
        "required": False,
    }
    totp = await _enrol(http, account)
    assert (await _status(http, account))["pending"] is True
    # An enrolment that is not confirmed changes nothing for logins.
    plain = await http.post(
        "/api/v1/auth/login", json={"email": account.email, "password": account.password}
    )
    assert plain.status_code == 200, plain.text

    wrong = await http.post(
        f"{MFA}/confirm", json={"code": _wrong_code(totp)}, headers=account.headers
    )
    assert_error(wrong, 400, "invalid_mfa_code")
    confirmed = await http.post(
        f"{MFA}/confirm", json={"code": totp.now()}, headers=account.headers
    )
    assert confirmed.status_code == 200, confirmed.text
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10
    assert all(RECOVERY_CODE.match(code) for code in codes), codes
    assert await _status(http, account) == {
        "enabled": True,
        "pending": False,
        "recovery_codes_remaining": 10,
        "required": False,
    }
    again = await http.post(f"{MFA}/confirm", json={"code": "000000"}, headers=account.headers)
    assert_error(again, 409, "mfa_already_enabled")
    assert_error(
        await http.post(f"{MFA}/enrol", headers=account.headers), 409, "mfa_already_enabled"
    )

    response = await http.post(
        "/api/v1/auth/login", json={"email": account.email, "password": account.password}
    )
    error = assert_error(response, 401, "mfa_required")
    assert error["details"]["expires_in"] == config.mfa.challenge_ttl_s == 300
    challenge = error["details"]["challenge"]
    tokens = await _code_step(http, challenge, _next_code(totp))
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert set(body) == {"user", "access_token", "refresh_token", "token_type", "expires_in"}
    assert body["user"]["id"] == account.id
    me = await http.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["email"] == account.email
    refreshed = await http.post(
        "/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text

    # The challenge granted its one login.
    reused = await _code_step(http, challenge, codes[0])
    assert_error(reused, 401, "invalid_mfa_challenge")
    assert_error(await _code_step(http, "made-up", codes[0]), 401, "invalid_mfa_challenge")


async def test_a_code_is_accepted_once(http: httpx.AsyncClient) -> None:
    account = await register(http, "mfa-reuse")
    used: list[str] = []
    totp, _ = await _enable(http, account, confirming=used)
    challenge = await _password_step(http, account)
    assert_error(await _code_step(http, challenge, used[0]), 401, "invalid_mfa_code")
    # A wrong code does not end the challenge: the user may retype.
    second = _next_code(totp)
    assert (await _code_step(http, challenge, second)).status_code == 200

    other = await _password_step(http, account)
    assert_error(await _code_step(http, other, second), 401, "invalid_mfa_code")


async def test_wrong_and_expired_codes_are_refused(http: httpx.AsyncClient) -> None:
    account = await register(http, "mfa-expired")
    totp = await _enabled_totp(http, account)
    challenge = await _password_step(http, account)
    for code in (
        _code_outside_window(totp, -3),  # 90 s old: outside the ±1 step window
        _code_outside_window(totp, 3),
        _wrong_code(totp),
        "12345",
        "abcdef",
    ):
        assert_error(await _code_step(http, challenge, code), 401, "invalid_mfa_code")
    # Five failures end the challenge, even for the right code.
    assert_error(await _code_step(http, challenge, _next_code(totp)), 401, "invalid_mfa_challenge")
    # The code was not spent by the refused attempt: a new challenge takes it.
    fresh = await _password_step(http, account)
    assert (await _code_step(http, fresh, _next_code(totp))).status_code == 200


async def test_recovery_codes_are_single_use(http: httpx.AsyncClient) -> None:
    account = await register(http, "mfa-recovery")
    _, codes = await _enable(http, account)
    challenge = await _password_step(http, account)
    # Typed carelessly: upper case, spaces around.
    ok = await _code_step(http, challenge, f"  {codes[0].upper()} ")
    assert ok.status_code == 200, ok.text
    assert (await _status(http, account))["recovery_codes_remaining"] == 9

    again = await _password_step(http, account)
    assert_error(await _code_step(http, again, codes[0]), 401, "invalid_mfa_code")
    no_dashes = await _code_step(http, again, codes[1].replace("-", ""))
    assert no_dashes.status_code == 200, no_dashes.text
    assert (await _status(http, account))["recovery_codes_remaining"] == 8

    # New codes replace every old one (a recovery code can authorise that too).
    response = await http.post(
        f"{MFA}/recovery-codes", json={"code": codes[2]}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    renewed = response.json()["recovery_codes"]
    assert len(renewed) == 10
    assert not set(renewed) & set(codes)
    assert (await _status(http, account))["recovery_codes_remaining"] == 10
    third = await _password_step(http, account)
    assert_error(await _code_step(http, third, codes[3]), 401, "invalid_mfa_code")
    assert (await _code_step(http, third, renewed[0])).status_code == 200


async def test_disable_with_a_code(http: httpx.AsyncClient) -> None:
    account = await register(http, "mfa-disable")
    assert_error(
        await http.post(f"{MFA}/disable", json={"code": "123456"}, headers=account.headers),
        409,
        "mfa_not_enabled",
    )
    totp, codes = await _enable(http, account)
    pending = await _password_step(http, account)
    wrong = await http.post(
        f"{MFA}/disable", json={"code": _wrong_code(totp)}, headers=account.headers
    )
    assert_error(wrong, 400, "invalid_mfa_code")
    off = await http.post(
        f"{MFA}/disable", json={"code": _next_code(totp)}, headers=account.headers
    )
    assert off.status_code == 200, off.text
    assert off.json() == {
        "enabled": False,
        "pending": False,
        "recovery_codes_remaining": 0,
        "required": False,
    }
    login = await http.post(
        "/api/v1/auth/login", json={"email": account.email, "password": account.password}
    )
    assert login.status_code == 200, login.text
    # A challenge issued while MFA was on grants nothing now; the old recovery codes are gone.
    assert_error(await _code_step(http, pending, codes[0]), 401, "invalid_mfa_challenge")


async def test_mfa_routes_need_a_token(http: httpx.AsyncClient) -> None:
    for method, path in (
        ("GET", ""),
        ("POST", "/enrol"),
        ("POST", "/confirm"),
        ("POST", "/disable"),
    ):
        response = await http.request(method, MFA + path, json={"code": "123456"})
        assert_error(response, 401, "unauthorized")
    bad = await http.post(f"{MFA}/login", json={"challenge": "x", "code": "1", "extra": 1})
    assert_error(bad, 400, "validation_error")


async def test_openapi_documents_the_mfa_routes(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    paths = document["paths"]
    for path in ("", "/enrol", "/confirm", "/login", "/recovery-codes", "/disable"):
        assert MFA + path in paths, sorted(paths)
    login = paths[f"{MFA}/login"]["post"]
    assert login["security"] == []
    assert "requestBody" in login
    assert "200" in login["responses"]
    assert "401" in paths["/api/v1/auth/login"]["post"]["responses"]


@pytest.fixture
async def limited(
    config: Config, run_id: str, request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    strict = replace(
        config,
        redis_prefix=f"vf-test-{run_id}-{request.node.name}:",
        rate_limits=RateLimits(login_per_email=3, login_per_ip=1000, login_window_s=60),
    )
    async with api_client(strict) as client:
        yield client


async def test_code_guesses_are_rate_limited_per_user(limited: httpx.AsyncClient) -> None:
    account = await register(limited, "mfa-limit")
    totp = await _enabled_totp(limited, account)  # the confirmation counts: 1 of 3
    challenge = await _password_step(limited, account)
    for _ in range(2):
        assert_error(await _code_step(limited, challenge, _wrong_code(totp)), 401)
    limited_answer = await _code_step(limited, challenge, _next_code(totp))
    error = assert_error(limited_answer, 429, "rate_limited")
    assert 1 <= int(limited_answer.headers["Retry-After"]) <= 60
    assert error["details"]["limit"] == 3
    # The same bucket guards every route that checks a code.
    disable = await limited.post(
        f"{MFA}/disable", json={"code": _next_code(totp)}, headers=account.headers
    )
    assert_error(disable, 429, "rate_limited")


async def test_code_guesses_are_rate_limited_per_address(config: Config, run_id: str) -> None:
    strict = replace(
        config,
        redis_prefix=f"vf-test-{run_id}-mfa-ip:",
        rate_limits=RateLimits(login_per_email=1000, login_per_ip=3, login_window_s=60),
    )
    async with api_client(strict) as http:
        account = await register(http, "mfa-ip")
        totp = await _enabled_totp(http, account)  # enrol and confirm: 2 of 3
        challenge = await _password_step(http, account)  # login's own bucket
        assert_error(await _code_step(http, challenge, _wrong_code(totp)), 401)
        assert_error(await _code_step(http, challenge, _next_code(totp)), 429, "rate_limited")


async def test_required_mfa_allows_only_enrolment(config: Config, run_id: str) -> None:
    required = replace(
        config, redis_prefix=f"vf-test-{run_id}-mfa-required:", mfa=MFASettings(required=True)
    )
    async with serving(required) as server, api_client(server) as http:
        account = await register(http, "mfa-required")
        assert_error(
            await http.get("/api/v1/projects", headers=account.headers),
            403,
            "mfa_enrolment_required",
        )
        assert_error(
            await http.post("/api/v1/auth/ws-ticket", headers=account.headers),
            403,
            "mfa_enrolment_required",
        )
        await _refused_socket(server, account)
        assert (await http.get("/api/v1/auth/me", headers=account.headers)).status_code == 200
        assert (await _status(http, account))["required"] is True

        totp, codes = await _enable(http, account)
        # The same token reaches everything once MFA is on.
        assert (await http.get("/api/v1/projects", headers=account.headers)).status_code == 200
        challenge = await _password_step(http, account)
        assert (await _code_step(http, challenge, _next_code(totp))).status_code == 200

        # Turning MFA off (allowed: a lost phone is re-enrolled this way) restricts again.
        off = await http.post(f"{MFA}/disable", json={"code": codes[0]}, headers=account.headers)
        assert off.status_code == 200, off.text
        assert_error(
            await http.get("/api/v1/projects", headers=account.headers),
            403,
            "mfa_enrolment_required",
        )


async def _refused_socket(server: Server, account: Account) -> None:
    url = server.base_url.replace("http://", "ws://") + f"/api/v1/projects/{uuid.uuid4()}/collab"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url, additional_headers=account.headers)
    assert refused.value.response.status_code == 403


async def test_an_expired_challenge_grants_nothing(config: Config, run_id: str) -> None:
    # A lifetime of 0 s: the challenge is past it by the time any code arrives (no sleeping).
    instant = replace(
        config, redis_prefix=f"vf-test-{run_id}-mfa-ttl:", mfa=MFASettings(challenge_ttl_s=0)
    )
    async with api_client(instant) as http:
        account = await register(http, "mfa-ttl")
        totp = await _enabled_totp(http, account)
        challenge = await _password_step(http, account)
        answer = await _code_step(http, challenge, _next_code(totp))
        assert_error(answer, 401, "invalid_mfa_challenge")
