"""The page and its assets over HTTP, and the browser session routes (refresh cookie)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import httpx
import pytest

from tests.support import assert_error, register
from web.blueprints import ui as ui_module
from web.blueprints.session import COOKIE

BROWSER = {"X-Requested-With": "vaporform", "X-Vaporform-Session": "cookie"}


@pytest.mark.parametrize(
    "path", ["/", "/login", "/projects/abc", "/projects/abc/files/src/deep/app.py"]
)
async def test_the_page_is_served_for_its_routes_with_a_strict_csp(
    api: httpx.AsyncClient, path: str
) -> None:
    response = await api.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    policy = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert policy["script-src"] == "'self'"
    assert policy["default-src"] == "'self'"
    assert policy["connect-src"].split() == ["'self'", f"ws://{api.base_url.netloc.decode()}"]
    assert policy["frame-ancestors"] == "'none'"
    assert "<script>" not in response.text  # only <script src=...>, nothing inline
    assert 'type="module" src="/static/main-' in response.text
    assert "//" not in response.text.replace("http://", "").split("<body>")[0].replace(
        "<!doctype html>", ""
    ), "nothing from another origin"


async def test_assets_are_hashed_immutable_and_sent_gzipped(api: httpx.AsyncClient) -> None:
    manifest = json.loads((ui_module.STATIC_DIR / "manifest.json").read_text())
    for name in (manifest["js"], manifest["css"]):
        plain = await api.get(f"/static/{name}", headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 200
        assert plain.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert "content-encoding" not in plain.headers
        assert plain.content == (ui_module.STATIC_DIR / name).read_bytes()
        # httpx asks for gzip by default and decodes it.
        packed = await api.get(f"/static/{name}")
        assert packed.headers["content-encoding"] == "gzip"
        assert packed.content == plain.content
        assert int(packed.headers["content-length"]) < len(plain.content)
    kinds = {
        "js": "text/javascript; charset=utf-8",
        "css": "text/css; charset=utf-8",
    }
    for key, kind in kinds.items():
        found = await api.get(f"/static/{manifest[key]}")
        assert found.headers["content-type"] == kind
    assert (await api.get("/static/../app.py")).status_code == 404
    assert (await api.get("/static/nope-ABCDEFGH.js")).status_code == 404
    total = sum(
        len(gzip.compress((ui_module.STATIC_DIR / f["path"]).read_bytes()))
        for f in manifest["files"]
        if f["path"].endswith(".js")
    )
    assert total < 800 * 1024, f"the whole bundle is {total} bytes gzipped"


async def test_a_missing_bundle_answers_how_to_build_it(
    api: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server runs in this process: point it at an empty folder for this request.
    monkeypatch.setattr(ui_module, "STATIC_DIR", tmp_path)
    response = await api.get("/projects/x/files/a.py")
    assert response.status_code == 503
    assert "npm ci --prefix web/ui &amp;&amp; npm run --prefix web/ui build" in response.text
    assert "content-security-policy" in response.headers


async def test_cookie_session_sign_in_refresh_and_logout(api: httpx.AsyncClient) -> None:
    who = await register(api, "cookie")
    login = await api.post(
        "/api/v1/auth/login", json={"email": who.email, "password": who.password}, headers=BROWSER
    )
    assert login.status_code == 200, login.text
    body = login.json()
    assert "refresh_token" not in body
    assert body["access_token"]
    cookie = login.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/api/v1/auth/session"):
        assert attribute in cookie, cookie
    assert "Secure" not in cookie  # plain HTTP here; HTTPS adds it
    first = api.cookies[COOKIE]

    refreshed = await api.post("/api/v1/auth/session/refresh", headers=BROWSER)
    assert refreshed.status_code == 200, refreshed.text
    assert set(refreshed.json()) == {"user", "access_token", "token_type", "expires_in"}
    assert api.cookies[COOKIE] != first  # rotated
    me = await api.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    )
    assert me.json()["email"] == who.email

    # CSRF: the custom header is required and a foreign Origin is refused.
    assert_error(await api.post("/api/v1/auth/session/refresh"), 403, "csrf_rejected")
    assert_error(
        await api.post(
            "/api/v1/auth/session/refresh",
            headers={**BROWSER, "Origin": "https://evil.example"},
        ),
        403,
        "csrf_rejected",
    )
    # The old cookie was spent: presenting it again revokes the whole login.
    replay = httpx.AsyncClient(base_url=api.base_url, cookies={COOKIE: first})
    async with replay:
        assert_error(
            await replay.post("/api/v1/auth/session/refresh", headers=BROWSER),
            401,
            "refresh_token_reused",
        )
    assert_error(
        await api.post("/api/v1/auth/session/refresh", headers=BROWSER),
        401,
        "invalid_refresh_token",
    )


async def test_logout_revokes_the_session_and_the_access_token(api: httpx.AsyncClient) -> None:
    who = await register(api, "bye")
    login = await api.post(
        "/api/v1/auth/login", json={"email": who.email, "password": who.password}, headers=BROWSER
    )
    token = login.json()["access_token"]
    out = await api.post(
        "/api/v1/auth/session/logout", headers={**BROWSER, "Authorization": f"Bearer {token}"}
    )
    assert out.status_code == 204
    assert COOKIE not in api.cookies
    assert_error(
        await api.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}), 401
    )
    assert_error(await api.post("/api/v1/auth/session/refresh", headers=BROWSER), 401, "no_session")


async def test_without_the_cookie_header_sign_in_is_unchanged(api: httpx.AsyncClient) -> None:
    who = await register(api, "classic")
    login = await api.post(
        "/api/v1/auth/login", json={"email": who.email, "password": who.password}
    )
    assert login.status_code == 200
    assert login.json()["refresh_token"]
    assert "set-cookie" not in login.headers


async def test_the_session_routes_are_in_the_openapi_document(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    assert "/api/v1/auth/session/refresh" in paths
    assert "/api/v1/auth/session/logout" in paths
    assert "/" not in paths
    assert "/static/{filename}" not in paths
