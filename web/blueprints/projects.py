"""Projects and their members."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import asdict
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from quart import Blueprint, g, request
from quart_schema import document_querystring, document_response, validate_request

from store import outbox, projects, users
from vaporform import tracing
from web import audit
from web.access import parse_uuid, project_for
from web.auth import principal, require_auth
from web.client_ip import client_ip
from web.errors import APIError, not_found
from web.openapi import document_errors, document_no_content
from web.revocation import revocations
from web.services import services
from workflows.projects.contract import (
    ProjectCreatedInput,
    ProjectDeletionInput,
    project_deletion_workflow_id,
)

blueprint = Blueprint("projects", __name__, url_prefix="/api/v1/projects")

MAX_CONFIG_BYTES = 64 * 1024


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _bounded_config(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and len(json.dumps(value)) > MAX_CONFIG_BYTES:
        raise ValueError(f"config must serialise to at most {MAX_CONFIG_BYTES} bytes")
    return value


class ProjectIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10_000)
    config: dict[str, Any] = Field(default_factory=dict)

    _config = field_validator("config")(_bounded_config)


class ProjectPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    config: dict[str, Any] | None = None

    _config = field_validator("config")(_bounded_config)


class MemberIn(Strict):
    email: str = Field(min_length=1, max_length=254)
    role: str = Field(pattern=r"^(owner|editor|viewer)$")


class MemberPatch(Strict):
    role: str = Field(pattern=r"^(owner|editor|viewer)$")


class ProjectOut(BaseModel):
    id: str
    name: str
    description: str
    config: dict[str, Any]
    metadata: dict[str, Any]
    owner_id: str
    role: str
    created_at: str
    updated_at: str


class ProjectList(BaseModel):
    items: list[ProjectOut]
    next_cursor: str | None = None


class ProjectsQuery(BaseModel):
    limit: int | None = Field(default=None, ge=1, le=500, description="page size, default 100")
    cursor: str | None = Field(default=None, description="the previous page's next_cursor")


class ProjectDeletionOut(BaseModel):
    id: str
    status: str = Field(description="`deleting`: hidden now, removed by the workflow")
    workflow_id: str = Field(description="`project-deletion-<id>`, in the Temporal UI")


class MemberOut(BaseModel):
    user_id: str
    email: str
    name: str
    role: str
    created_at: str


class MemberList(BaseModel):
    items: list[MemberOut]


@blueprint.post("")
@require_auth
@validate_request(ProjectIn)
@document_response(ProjectOut, 201)
async def create_project(data: ProjectIn) -> tuple[dict[str, Any], int]:
    caller = await principal()
    async with services().pool.acquire() as conn, conn.transaction():
        project = await projects.create(
            conn,
            owner_id=caller.user_id,
            name=data.name,
            description=data.description,
            config=data.config,
        )
        # The follow-up workflow commits with the project and starts after (store/outbox.py);
        # it records the audit event `project.created`.
        await outbox.enqueue(
            conn,
            "project_created",
            asdict(
                ProjectCreatedInput(
                    project_id=str(project.id),
                    owner_id=str(project.owner_id),
                    name=project.name,
                    request_id=g.get("request_id"),
                    client_ip=client_ip(),
                    created_at=project.created_at.isoformat(),
                )
            ),
            trace_context=tracing.inject(),
        )
    return project.public(), 201


@blueprint.get("")
@require_auth
@document_querystring(ProjectsQuery)
@document_response(ProjectList)
@document_errors((400, "`validation_error` (limit); `invalid_cursor`"))
async def list_projects() -> dict[str, Any]:
    """Newest first, a page at a time: `?limit=` (1-500, default 100) and `?cursor=` from the
    previous page's `next_cursor` (absent on the last page)."""
    caller = await principal()
    limit = _page_limit(request.args.get("limit"))
    after = _decode_cursor(request.args.get("cursor"))
    async with services().pool.acquire() as conn:
        found = await projects.list_for_member(conn, caller.user_id, limit=limit + 1, after=after)
    page: dict[str, Any] = {"items": [p.public() for p in found[:limit]]}
    if len(found) > limit:
        last = found[limit - 1]
        page["next_cursor"] = _encode_cursor(last.created_at, last.id)
    return page


MAX_PAGE = 500
DEFAULT_PAGE = 100


def _page_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise APIError(400, "validation_error", f"'limit' must be an integer from 1 to {MAX_PAGE}")
    return int(raw)


def _encode_cursor(created_at: datetime, project_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{project_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(raw: str | None) -> tuple[datetime, uuid.UUID] | None:
    if not raw:
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        when, _, project_id = text.partition("|")
        return datetime.fromisoformat(when), uuid.UUID(project_id)
    except (ValueError, UnicodeDecodeError):
        raise APIError(400, "invalid_cursor", "'cursor' is not one this server gave") from None


@blueprint.get("/<project_id>")
@require_auth
@document_response(ProjectOut)
async def get_project(project_id: str) -> dict[str, Any]:
    caller = await principal()
    async with services().pool.acquire() as conn:
        return (await project_for(conn, project_id, caller.user_id)).public()


@blueprint.patch("/<project_id>")
@require_auth
@validate_request(ProjectPatch)
@document_response(ProjectOut)
@document_errors((403, "`forbidden`: needs the editor role"))
async def patch_project(project_id: str, data: ProjectPatch) -> dict[str, Any]:
    caller = await principal()
    async with services().pool.acquire() as conn, conn.transaction():
        project = await project_for(conn, project_id, caller.user_id, need="editor")
        updated = await projects.update(
            conn,
            project.id,
            caller.user_id,
            name=data.name,
            description=data.description,
            config=data.config,
        )
        changed = sorted(data.model_dump(exclude_none=True))
        await audit.record(
            conn,
            "project.updated",
            actor_id=caller.user_id,
            project_id=project.id,
            target=str(project.id),
            details={"fields": changed},
        )
    assert updated is not None
    return updated.public()


@blueprint.delete("/<project_id>")
@require_auth
@document_response(ProjectDeletionOut, 202)
@document_errors((403, "`forbidden`: needs the owner role"))
async def delete_project(project_id: str) -> tuple[dict[str, Any], int]:
    """Hides the project at once (404 everywhere from now on, its sockets close) and starts the
    `ProjectDeletion` workflow, which removes its container, workflows, workspaces, files and
    history (docs/projects.md)."""
    caller = await principal()
    async with services().pool.acquire() as conn, conn.transaction():
        project = await project_for(conn, project_id, caller.user_id, need="owner")
        await projects.hide(conn, project.id)
        # Committed with the hiding, started after it (store/outbox.py): it always runs.
        await outbox.enqueue(
            conn,
            "project_deletion",
            asdict(
                ProjectDeletionInput(
                    project_id=str(project.id),
                    requested_by=str(caller.user_id),
                    request_id=g.get("request_id"),
                )
            ),
            trace_context=tracing.inject(),
        )
        await audit.record(
            conn,
            "project.deleted",
            actor_id=caller.user_id,
            project_id=project.id,
            target=str(project.id),
            details={"name": project.name},
        )
    # After the commit: every open socket of the project closes, on every node.
    await revocations().project_deleted(project.id)
    workflow_id = project_deletion_workflow_id(str(project.id))
    return {"id": str(project.id), "status": "deleting", "workflow_id": workflow_id}, 202


@blueprint.get("/<project_id>/members")
@require_auth
@document_response(MemberList)
async def list_members(project_id: str) -> dict[str, Any]:
    caller = await principal()
    async with services().pool.acquire() as conn:
        project = await project_for(conn, project_id, caller.user_id)
        found = await projects.members(conn, project.id)
    return {"items": [m.public() for m in found]}


@blueprint.post("/<project_id>/members")
@require_auth
@validate_request(MemberIn)
@document_response(MemberOut, 201)
@document_errors(
    (403, "`forbidden`: needs the owner role"),
    (404, "`user_not_found`: no account has this email"),
    (409, "`already_member`"),
)
async def add_member(project_id: str, data: MemberIn) -> tuple[dict[str, Any], int]:
    caller = await principal()
    async with services().pool.acquire() as conn, conn.transaction():
        project = await project_for(conn, project_id, caller.user_id, need="owner")
        user = await users.by_email(conn, data.email)
        if user is None:
            raise APIError(404, "user_not_found", "no account has this email")
        member = await projects.add_member(conn, project.id, user.id, data.role)
        if member is not None:
            await audit.record(
                conn,
                "member.added",
                actor_id=caller.user_id,
                project_id=project.id,
                target=str(user.id),
                details={"role": data.role},
            )
    if member is None:
        raise APIError(409, "already_member", "this user is already a member")
    return member.public(), 201


async def _keeps_an_owner(conn: Any, project_id: Any, user_id: Any) -> None:
    if await projects.other_owners(conn, project_id, user_id) == 0:
        raise APIError(409, "last_owner", "a project must keep at least one owner")


@blueprint.patch("/<project_id>/members/<user_id>")
@require_auth
@validate_request(MemberPatch)
@document_response(MemberOut)
@document_errors(
    (403, "`forbidden`: needs the owner role"), (409, "`last_owner`: a project keeps an owner")
)
async def patch_member(project_id: str, user_id: str, data: MemberPatch) -> dict[str, Any]:
    caller = await principal()
    target_id = parse_uuid(user_id, "member")
    async with services().pool.acquire() as conn, conn.transaction():
        project = await project_for(conn, project_id, caller.user_id, need="owner")
        current = await projects.member(conn, project.id, target_id)
        if current is None:
            raise not_found("member")
        if current.role == "owner" and data.role != "owner":
            await _keeps_an_owner(conn, project.id, target_id)
        member = await projects.set_member_role(conn, project.id, target_id, data.role)
        await audit.record(
            conn,
            "member.role_changed",
            actor_id=caller.user_id,
            project_id=project.id,
            target=str(target_id),
            details={"from": current.role, "to": data.role},
        )
    assert member is not None
    # Their open sockets take the new role (an editor made viewer stops editing).
    await revocations().changed(project_id=project.id, user_id=target_id)
    return member.public()


@blueprint.delete("/<project_id>/members/<user_id>")
@require_auth
@document_no_content("Removed")
@document_errors(
    (403, "`forbidden`: needs the owner role (or be the member leaving)"),
    (409, "`last_owner`: a project keeps an owner"),
)
async def remove_member(project_id: str, user_id: str) -> tuple[str, int]:
    """Owners remove anyone; any member may remove themselves (leave)."""
    caller = await principal()
    target_id = parse_uuid(user_id, "member")
    need = "viewer" if target_id == caller.user_id else "owner"
    async with services().pool.acquire() as conn, conn.transaction():
        project = await project_for(conn, project_id, caller.user_id, need=need)
        current = await projects.member(conn, project.id, target_id)
        if current is None:
            raise not_found("member")
        if current.role == "owner":
            await _keeps_an_owner(conn, project.id, target_id)
        await projects.remove_member(conn, project.id, target_id)
        await audit.record(
            conn,
            "member.removed",
            actor_id=caller.user_id,
            project_id=project.id,
            target=str(target_id),
            details={"role": current.role},
        )
    await revocations().changed(project_id=project.id, user_id=target_id)
    return "", 204
