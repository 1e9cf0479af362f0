"""Projects and their members."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from quart import Blueprint, g
from quart_schema import document_response, validate_request

from store import outbox, projects, users
from web.access import parse_uuid, project_for
from web.auth import principal, require_auth
from web.errors import APIError, not_found
from web.services import services
from workflows.shared import ProjectCreatedInput

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
        # The follow-up workflow commits with the project and starts after (store/outbox.py).
        await outbox.enqueue(
            conn,
            "project_created",
            asdict(
                ProjectCreatedInput(
                    project_id=str(project.id),
                    owner_id=str(project.owner_id),
                    name=project.name,
                    request_id=g.get("request_id"),
                )
            ),
        )
    return project.public(), 201


@blueprint.get("")
@require_auth
@document_response(ProjectList)
async def list_projects() -> dict[str, Any]:
    caller = await principal()
    async with services().pool.acquire() as conn:
        found = await projects.list_for_member(conn, caller.user_id)
    return {"items": [p.public() for p in found]}


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
    assert updated is not None
    return updated.public()


@blueprint.delete("/<project_id>")
@require_auth
async def delete_project(project_id: str) -> tuple[str, int]:
    caller = await principal()
    async with services().pool.acquire() as conn, conn.transaction():
        project = await project_for(conn, project_id, caller.user_id, need="owner")
        await projects.delete(conn, project.id)
    return "", 204


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
async def add_member(project_id: str, data: MemberIn) -> tuple[dict[str, Any], int]:
    caller = await principal()
    async with services().pool.acquire() as conn, conn.transaction():
        project = await project_for(conn, project_id, caller.user_id, need="owner")
        user = await users.by_email(conn, data.email)
        if user is None:
            raise APIError(404, "user_not_found", "no account has this email")
        member = await projects.add_member(conn, project.id, user.id, data.role)
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
    assert member is not None
    return member.public()


@blueprint.delete("/<project_id>/members/<user_id>")
@require_auth
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
    return "", 204
