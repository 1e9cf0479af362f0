"""Every failure is the JSON error shape; nothing malformed reaches a 500."""

from __future__ import annotations

import httpx
from quart import Quart

from tests.conftest import Server
from tests.support import assert_error, create_admin, register
from vaporform.config import Config
from web.app import create_app


async def test_malformed_bodies_get_json_errors(http: httpx.AsyncClient) -> None:
    account = await register(http)
    json_headers = {**account.headers, "Content-Type": "application/json"}
    cases: list[tuple[bytes, int, str]] = [
        (b"{not json", 400, "invalid_json"),
        (b"", 400, "invalid_json"),
        (b"[1, 2, 3]", 400, "validation_error"),
        (b'"a string"', 400, "validation_error"),
        (b'{"name": ["list"]}', 400, "validation_error"),
        (b'{"name": "ok", "unknown": 1}', 400, "validation_error"),
        (b'{"name": "\xff\xfe"}', 400, "invalid_encoding"),
        (b'{"name": null}', 400, "validation_error"),
    ]
    for body, status, code in cases:
        response = await http.post("/api/v1/projects", content=body, headers=json_headers)
        assert_error(response, status, code)


async def test_login_body_errors(http: httpx.AsyncClient) -> None:
    for body in (
        {"email": 1, "password": "x"},
        {"email": "a@b.c"},
        {"email": "a@b.c", "password": "x", "x": 1},
    ):
        assert_error(await http.post("/api/v1/auth/login", json=body), 400, "validation_error")
    not_json = await http.post(
        "/api/v1/auth/login", content=b"email=a", headers={"Content-Type": "text/plain"}
    )
    assert_error(not_json, 400)


async def test_huge_body_is_413(http: httpx.AsyncClient, config: Config) -> None:
    account = await register(http)
    huge = b'{"name": "' + b"x" * (config.max_body_bytes + 10) + b'"}'
    response = await http.post(
        "/api/v1/projects",
        content=huge,
        headers={**account.headers, "Content-Type": "application/json"},
    )
    assert_error(response, 413, "too_large")


async def test_routing_errors_are_json(http: httpx.AsyncClient) -> None:
    assert_error(await http.get("/nowhere"), 404, "not_found")
    response = await http.put("/api/v1/auth/login", json={})
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


async def test_request_id_is_echoed_or_made(http: httpx.AsyncClient) -> None:
    given = await http.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    made = await http.get("/healthz", headers={"X-Request-ID": "bad id\twith junk"})
    assert made.headers["X-Request-ID"] not in ("", "bad id\twith junk")
    error = await http.get("/nowhere")
    assert len(error.headers["X-Request-ID"]) == 32


async def test_unhandled_errors_are_json_500(config: Config, server: Server) -> None:
    app: Quart = create_app(config)

    @app.get("/boom")
    async def boom() -> str:
        raise RuntimeError("a bug")

    async with app.test_app() as test_app:
        response = await test_app.test_client().get("/boom")
        assert response.status_code == 500
        body = await response.get_json()
        assert body == {
            "error": {
                "code": "internal_error",
                "message": "an internal error occurred",
                "details": {},
            }
        }
        assert response.headers["X-Request-ID"]


async def test_health_readiness_and_openapi(http: httpx.AsyncClient, config: Config) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200, ready.text
    # The public learns up or down, nothing about the deployment; nor does any user.
    assert ready.json() == {"status": "ok"}
    user = await register(http)
    assert (await http.get("/readyz", headers=user.headers)).json() == {"status": "ok"}
    admin = await create_admin(http, config)
    detailed = await http.get("/readyz", headers=admin.headers)
    assert detailed.status_code == 200
    assert detailed.json() == {
        "status": "ok",
        "checks": {"postgres": "ok", "temporal": "ok", "redis": "ok"},
    }
    spec = (await http.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["security"] == [{"bearer": []}]
    paths = spec["paths"]
    for path in ("/api/v1/auth/register", "/api/v1/projects", "/api/v1/projects/{project_id}"):
        assert path in paths, sorted(paths)
    assert paths["/api/v1/auth/login"]["post"]["security"] == []


async def test_readiness_reports_a_dead_dependency(config: Config, http: httpx.AsyncClient) -> None:
    from dataclasses import replace

    from tests.conftest import free_port

    admin = await create_admin(http, config)
    broken = replace(config, temporal_address=f"127.0.0.1:{free_port()}")
    app = create_app(broken)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert await response.get_json() == {"status": "unavailable"}
        detailed = await client.get("/readyz", headers=admin.headers)
        assert detailed.status_code == 503
        body = await detailed.get_json()
        assert body["status"] == "unavailable"
        assert body["checks"]["postgres"] == "ok"
        assert body["checks"]["temporal"].startswith("error")
