"""Admin routes: users (search, disable and enable, global role, MFA required), per-user quotas
and the whole audit log. Details: docs/admin.md.

Only admins see any of it. Everyone else gets 404 `not_found`, the answer for a project one
may not see, so the admin surface tells a non-admin nothing, not even that it is there (a
missing or invalid token is still 401, as everywhere). The role is read from PostgreSQL on
every call, not from the token, so a demoted admin loses these routes at once. Every change
is audited in its transaction; a refused caller is audited as `admin.denied`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, Literal, ParamSpec, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, g, request
from quart_schema import document_querystring, document_response, validate_request
from temporalio.service import RPCError

from store import quotas, users
from store.users import User
from web import audit
from web.access import parse_uuid
from web.auth import Principal, principal
from web.blueprints.audit import (
    AuditPage,
    AuditQuery,
    audit_filter,
    audit_page,
    decode_cursor,
    encode_cursor,
    invalid,
    page_limit,
)
from web.errors import APIError, not_found
from web.openapi import document_errors
from web.revocation import revocations
from web.services import services

blueprint = Blueprint("admin", __name__, url_prefix="/api/v1/admin")

P = ParamSpec("P")
R = TypeVar("R")

_ADMIN_CHECKED = "_vaporform_admin_checked"
NOT_ADMIN = (404, "`not_found`: also the answer to every caller who is not an admin")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class AdminUserOut(BaseModel):
    id: str
    email: str
    name: str
    role: str = Field(description="user or admin")
    created_at: str
    disabled: bool
    disabled_at: str | None
    mfa_required: bool = Field(description="an admin requires MFA of this user")
    mfa_enabled: bool = Field(description="the user has confirmed a second factor")


class AdminUserList(BaseModel):
    items: list[AdminUserOut]
    next_cursor: str | None = None


class UsersQuery(BaseModel):
    q: str | None = Field(default=None, description="part of the email or the name, any case")
    role: str | None = Field(default=None, description="user or admin")
    disabled: bool | None = None
    limit: int | None = Field(default=None, description="1-500, default 100")
    cursor: str | None = None


class UserPatch(Strict):
    disabled: bool | None = Field(
        default=None, description="true: every session ends at once and logins are refused"
    )
    role: Literal["user", "admin"] | None = None
    mfa_required: bool | None = Field(
        default=None, description="true: without MFA the user may only enrol"
    )


class QuotasIn(Strict):
    """Every limit; null (or left out) is the deployment's default."""

    containers_running: int | None = Field(default=None, ge=0, le=100_000)
    storage_bytes: int | None = Field(default=None, ge=0, le=2**62)
    # numeric(14, 6) holds up to 10^8 dollars; a million is budget enough for anyone.
    ai_budget_usd: float | None = Field(default=None, ge=0, le=1_000_000)


class QuotaLimits(BaseModel):
    containers_running: int | None
    storage_bytes: int | None
    ai_budget_usd: float | None


class QuotaUsage(BaseModel):
    containers_running: int | None = Field(description="null when Temporal cannot be asked")
    storage_bytes: int
    ai_spent_usd: float


class QuotasOut(BaseModel):
    user_id: str
    quotas: QuotaLimits = Field(description="as set for the user; null: the default")
    effective: QuotaLimits = Field(description="what applies; null: no limit")
    usage: QuotaUsage
    updated_at: str | None


def require_admin(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    @wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        await admin_caller()
        return await func(*args, **kwargs)

    return wrapper


async def admin_caller() -> Principal:
    """The caller, an enabled admin as PostgreSQL says now; 404 for anyone else (401 without
    a valid token)."""
    caller = await principal()
    if g.get(_ADMIN_CHECKED):
        return caller
    async with services().pool.acquire() as conn:
        user = await users.by_id(conn, caller.user_id)
    if user is None or user.role != "admin":
        await audit.record_after(
            "admin.denied",
            actor_id=caller.user_id,
            outcome="denied",
            details={"method": request.method, "path": request.path},
        )
        raise not_found()
    setattr(g, _ADMIN_CHECKED, True)
    return caller


def _user_id(raw: str) -> uuid.UUID:
    return parse_uuid(raw, "user")


@blueprint.get("/users")
@require_admin
@document_querystring(UsersQuery)
@document_response(AdminUserList)
@document_errors(NOT_ADMIN)
async def list_users() -> dict[str, Any]:
    """Users whose email or name contains `q`, newest first, a page at a time."""
    text = request.args.get("q") or None
    if text is not None and len(text) > 254:
        raise invalid("q", "is longer than 254 characters")
    role = request.args.get("role") or None
    if role is not None and role not in ("user", "admin"):
        raise invalid("role", "must be user or admin")
    raw_disabled = (request.args.get("disabled") or "").lower()
    if raw_disabled not in ("", "true", "false"):
        raise invalid("disabled", "must be true or false")
    limit = page_limit(request.args.get("limit"))
    cursor = decode_cursor(request.args.get("cursor"))
    after = None
    if cursor is not None:
        try:
            after = (cursor[0], uuid.UUID(cursor[1]))
        except ValueError:
            raise APIError(400, "invalid_cursor", "'cursor' is not one this server gave") from None
    async with services().pool.acquire() as conn:
        found = await users.search(
            conn,
            text=text,
            role=role,
            disabled=None if raw_disabled == "" else raw_disabled == "true",
            limit=limit + 1,
            after=after,
        )
    body: dict[str, Any] = {"items": [u.public() for u in found[:limit]]}
    if len(found) > limit:
        last = found[limit - 1]
        body["next_cursor"] = encode_cursor(last.created_at, last.id)
    return body


async def _summary(user_id: uuid.UUID) -> dict[str, Any]:
    async with services().pool.acquire() as conn:
        found = await users.summary(conn, user_id)
    if found is None:
        raise not_found("user")
    return found.public()


@blueprint.get("/users/<user_id>")
@require_admin
@document_response(AdminUserOut)
@document_errors(NOT_ADMIN)
async def get_user(user_id: str) -> dict[str, Any]:
    return await _summary(_user_id(user_id))


@blueprint.patch("/users/<user_id>")
@require_admin
@validate_request(UserPatch)
@document_response(AdminUserOut)
@document_errors(
    NOT_ADMIN, (409, "`last_admin`: the only enabled admin cannot be disabled or demoted")
)
async def patch_user(user_id: str, data: UserPatch) -> dict[str, Any]:
    """Disable or enable the account, set its global role, require MFA of it. Disabling ends
    every session at once: refresh tokens are revoked, access tokens and open sockets stop
    within a second on every node."""
    caller = await admin_caller()
    target = _user_id(user_id)
    changed = False
    async with services().pool.acquire() as conn, conn.transaction():
        await users.lock_admins(conn)
        user = await users.by_id(conn, target)
        if user is None:
            raise not_found("user")
        losing_admin = user.role == "admin" and not user.disabled
        demoted = bool(data.disabled) or data.role == "user"
        if losing_admin and demoted and await users.other_active_admins(conn, target) == 0:
            raise APIError(
                409, "last_admin", "this is the only enabled admin; make another one first"
            )
        if data.role is not None and data.role != user.role:
            await users.set_role(conn, target, data.role)
            await _audit(conn, caller, user, "admin.role_set", {"from": user.role, "to": data.role})
            changed = True
        if data.mfa_required is not None and data.mfa_required != user.mfa_required:
            await users.set_mfa_required(conn, target, data.mfa_required)
            await _audit(conn, caller, user, "admin.mfa_required_set", {"to": data.mfa_required})
            changed = True
        if data.disabled is not None and data.disabled != user.disabled:
            await users.set_disabled(conn, target, data.disabled)
            action = "admin.user_disabled" if data.disabled else "admin.user_enabled"
            await _audit(conn, caller, user, action, {})
            changed = True
    if changed:
        # After the commit: the account's cached standing goes, its sockets are re-checked,
        # here and on every other node.
        await revocations().changed(user_id=target)
    return await _summary(target)


async def _audit(
    conn: Any, caller: Principal, user: User, action: str, details: dict[str, Any]
) -> None:
    await audit.record(
        conn,
        action,
        actor_id=caller.user_id,
        target=str(user.id),
        details={"email": user.email, **details},
    )


async def _quotas_out(user_id: uuid.UUID) -> dict[str, Any]:
    found = services()
    async with found.pool.acquire() as conn:
        if await users.by_id(conn, user_id) is None:
            raise not_found("user")
        own = await quotas.get(conn, user_id)
        stored = await quotas.storage_used(conn, user_id)
        spent = await quotas.ai_spent(conn, user_id)
    query = (
        f"WorkflowType = 'ContainerWorkflow' AND ExecutionStatus = 'Running' "
        f"AND UserId = '{user_id}'"
    )
    try:
        running: int | None = (await found.temporal.count_workflows(query)).count
    except RPCError:
        running = None
    public = own.public()
    limits = {key: public[key] for key in ("containers_running", "storage_bytes", "ai_budget_usd")}
    effective = dict(limits)
    if effective["ai_budget_usd"] is None:
        effective["ai_budget_usd"] = found.config.ai.budget_user_usd
    return {
        "user_id": str(user_id),
        "quotas": limits,
        "effective": effective,
        "usage": {"containers_running": running, "storage_bytes": stored, "ai_spent_usd": spent},
        "updated_at": public["updated_at"],
    }


@blueprint.get("/users/<user_id>/quotas")
@require_admin
@document_response(QuotasOut)
@document_errors(NOT_ADMIN)
async def get_quotas(user_id: str) -> dict[str, Any]:
    """The user's quotas, what applies and what they use now."""
    return await _quotas_out(_user_id(user_id))


@blueprint.put("/users/<user_id>/quotas")
@require_admin
@validate_request(QuotasIn)
@document_response(QuotasOut)
@document_errors(NOT_ADMIN)
async def put_quotas(user_id: str, data: QuotasIn) -> dict[str, Any]:
    """Replace the user's quotas; a limit left out or null is the deployment's default."""
    caller = await admin_caller()
    target = _user_id(user_id)
    async with services().pool.acquire() as conn, conn.transaction():
        user = await users.by_id(conn, target)
        if user is None:
            raise not_found("user")
        before = await quotas.get(conn, target)
        after = await quotas.put(
            conn,
            target,
            containers_running=data.containers_running,
            storage_bytes=data.storage_bytes,
            ai_budget_usd=data.ai_budget_usd,
        )
        keys = ("containers_running", "storage_bytes", "ai_budget_usd")
        await _audit(
            conn,
            caller,
            user,
            "admin.quotas_set",
            {
                "from": {k: before.public()[k] for k in keys},
                "to": {k: after.public()[k] for k in keys},
            },
        )
    return await _quotas_out(target)


@blueprint.get("/audit")
@require_admin
@document_querystring(AuditQuery)
@document_response(AuditPage)
@document_errors(NOT_ADMIN)
async def list_audit() -> dict[str, Any]:
    """Every audited action, newest first, a page at a time, filtered by actor, project,
    action (or a family: `auth.*`), outcome and time."""
    return await audit_page(audit_filter(None))
