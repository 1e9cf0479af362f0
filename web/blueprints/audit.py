"""The audit log, read a page at a time: a project's, by its owners (admins read everything at
`GET /api/v1/admin/audit`, web/blueprints/admin.py). Recording is web/audit.py; the table is
store/audit.py."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from quart import Blueprint, request
from quart_schema import document_querystring, document_response

from store import audit as audit_store
from store.audit import OUTCOMES
from web.access import project_for
from web.auth import principal, require_auth
from web.errors import APIError
from web.openapi import document_errors
from web.services import services

blueprint = Blueprint("audit", __name__, url_prefix="/api/v1/projects")

MAX_PAGE = 500
DEFAULT_PAGE = 100


class AuditEventOut(BaseModel):
    id: int
    created_at: str
    action: str = Field(description="`<area>.<verb>`, e.g. `file.written`, `auth.login`")
    outcome: str = Field(description="success, failure or denied")
    actor_id: str | None = Field(description="who did it; null when unknown (a wrong email)")
    project_id: str | None
    target: str | None = Field(description="what it acted on: a path, a user id, a job id")
    request_id: str | None = Field(description="the X-Request-ID of the request, as in the logs")
    ip: str | None = Field(description="the client address (behind trusted proxies: the client)")
    details: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next_cursor: str | None = Field(
        default=None, description="pass as `cursor` for the next (older) page; absent at the end"
    )


class ProjectAuditQuery(BaseModel):
    actor: str | None = Field(default=None, description="a user id")
    action: str | None = Field(
        default=None, description="one action, or a family: `file.*`, `member.*`"
    )
    outcome: str | None = Field(default=None, description="success, failure or denied")
    since: str | None = Field(default=None, description="ISO 8601; events at or after it")
    until: str | None = Field(default=None, description="ISO 8601; events before it")
    limit: int | None = Field(default=None, description=f"1-{MAX_PAGE}, default {DEFAULT_PAGE}")
    cursor: str | None = None


class AuditQuery(ProjectAuditQuery):
    project: str | None = Field(default=None, description="a project id")


def invalid(name: str, why: str) -> APIError:
    return APIError(400, "validation_error", f"{name!r} {why}", details={"parameter": name})


def page_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise invalid("limit", f"must be an integer from 1 to {MAX_PAGE}")
    return int(raw)


def uuid_arg(name: str) -> uuid.UUID | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise invalid(name, "must be a UUID") from None


def time_arg(name: str) -> datetime | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise invalid(name, "must be an ISO 8601 time") from None
    if when.tzinfo is None:
        raise invalid(name, "must carry a time zone (`Z` or `+00:00`)")
    return when


def encode_cursor(when: datetime, key: object) -> str:
    raw = f"{when.isoformat()}|{key}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(raw: str | None) -> tuple[datetime, str] | None:
    """The (time, key) of the last item of the page before; 400 for one we did not give."""
    if not raw:
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        when, _, key = text.partition("|")
        return datetime.fromisoformat(when), key
    except (ValueError, UnicodeDecodeError):
        raise APIError(400, "invalid_cursor", "'cursor' is not one this server gave") from None


def audit_filter(project_id: uuid.UUID | None) -> audit_store.Filter:
    """The filter the query string asks for; `project_id` when the route fixes the project."""
    action = request.args.get("action") or None
    if action is not None and len(action) > 100:
        raise invalid("action", "is longer than 100 characters")
    outcome = request.args.get("outcome") or None
    if outcome is not None and outcome not in OUTCOMES:
        raise invalid("outcome", f"must be one of {', '.join(OUTCOMES)}")
    return audit_store.Filter(
        actor_id=uuid_arg("actor"),
        project_id=project_id if project_id is not None else uuid_arg("project"),
        action=action,
        outcome=outcome,
        since=time_arg("since"),
        until=time_arg("until"),
    )


async def audit_page(where: audit_store.Filter) -> dict[str, Any]:
    limit = page_limit(request.args.get("limit"))
    cursor = decode_cursor(request.args.get("cursor"))
    after: tuple[datetime, int] | None = None
    if cursor is not None:
        if not cursor[1].isdigit():
            raise APIError(400, "invalid_cursor", "'cursor' is not one this server gave")
        after = (cursor[0], int(cursor[1]))
    async with services().pool.acquire() as conn:
        found = await audit_store.page(conn, where, limit=limit + 1, after=after)
    body: dict[str, Any] = {"items": [event.public() for event in found[:limit]]}
    if len(found) > limit:
        last = found[limit - 1]
        body["next_cursor"] = encode_cursor(last.created_at, last.id)
    return body


@blueprint.get("/<project_id>/audit")
@require_auth
@document_querystring(ProjectAuditQuery)
@document_response(AuditPage)
@document_errors((403, "`forbidden`: only the project's owners read its audit log"))
async def project_audit(project_id: str) -> dict[str, Any]:
    """What was done in the project, newest first, a page at a time. Owners only."""
    caller = await principal()
    async with services().pool.acquire() as conn:
        project = await project_for(conn, project_id, caller.user_id, need="owner")
    return await audit_page(audit_filter(project.id))
