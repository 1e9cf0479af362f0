"""Liveness and readiness.

`/readyz` tells everyone only whether the API is ready (200 `ok`) or not (503 `unavailable`):
which dependency failed, and how, would tell an outsider about the deployment. A bearer token
of a global admin adds the per-dependency checks; the logs carry them whenever one fails.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from pydantic import BaseModel, Field
from quart import Blueprint
from quart_schema import document_response, security_scheme

from store import users
from web.auth import principal
from web.services import services

log = logging.getLogger("vaporform.web")

blueprint = Blueprint("health", __name__)
CHECK_TIMEOUT_S = 2.0


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadinessOut(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] | None = Field(
        default=None,
        description="admins only: `ok` or the error of each dependency (postgres, temporal, "
        "redis when configured)",
    )


@blueprint.get("/healthz")
@security_scheme([])
@document_response(HealthOut)
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


async def _check(name: str, probe: Any) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT_S)
        return name, "ok"
    except Exception as exc:  # each failing dependency is reported, not raised
        return name, f"error: {type(exc).__name__}: {exc}"[:300]


async def _caller_is_admin() -> bool:
    """A valid bearer token of a user whose global role is admin now. Anything else, including
    a token that cannot be checked because a dependency is down, gets the public answer."""

    async def check() -> bool:
        caller = await principal()
        async with services().pool.acquire() as conn:
            user = await users.by_id(conn, caller.user_id)
        return user is not None and user.role == "admin"

    try:
        return await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
    except Exception:  # no token, a refused one, or no way to check it: not an admin
        return False


@blueprint.get("/readyz")
@security_scheme([{}, {"bearer": []}])
@document_response(ReadinessOut)
@document_response(ReadinessOut, 503)
async def readyz() -> tuple[dict[str, Any], int]:
    """Every dependency answers: PostgreSQL, Redis (when configured) and Temporal.

    200 `{"status": "ok"}` or 503 `{"status": "unavailable"}`; with a global admin's bearer
    token, also `checks`, the answer of each dependency.
    """
    found = services()
    checks = [
        _check("postgres", found.pool.fetchval("SELECT 1")),
        _check("temporal", found.temporal.service_client.check_health()),
    ]
    if found.config.redis_url:
        checks.append(_check("redis", found.ephemeral.ping()))
    results = dict(await asyncio.gather(*checks))
    ready = all(v == "ok" for v in results.values())
    if not ready:
        log.warning("not ready", extra={"checks": results})
    body: dict[str, Any] = {"status": "ok" if ready else "unavailable"}
    if await _caller_is_admin():
        body["checks"] = results
    return body, 200 if ready else 503
