"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Blueprint, Response, jsonify
from quart_schema import security_scheme

from web.errors import error_response
from web.services import services

blueprint = Blueprint("health", __name__)
CHECK_TIMEOUT_S = 2.0


@blueprint.get("/healthz")
@security_scheme([])
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


async def _check(name: str, probe: Any) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT_S)
        return name, "ok"
    except Exception as exc:  # each failing dependency is reported, not raised
        return name, f"error: {type(exc).__name__}: {exc}"[:300]


@blueprint.get("/readyz")
@security_scheme([])
async def readyz() -> Response:
    """Every dependency answers: PostgreSQL, Redis (when configured) and Temporal."""
    found = services()
    checks = [
        _check("postgres", found.pool.fetchval("SELECT 1")),
        _check("temporal", found.temporal.service_client.check_health()),
    ]
    if found.config.redis_url:
        checks.append(_check("redis", found.ephemeral.ping()))
    results = dict(await asyncio.gather(*checks))
    if all(v == "ok" for v in results.values()):
        return jsonify({"status": "ready", "checks": results})
    return error_response(503, "not_ready", "a dependency is unavailable", {"checks": results})
