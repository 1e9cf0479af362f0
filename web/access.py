"""Who may do what to a project. A project the caller is not a member of is not found."""

from __future__ import annotations

import uuid

from store import projects
from store.db import Conn
from store.projects import Project
from web.auth import Principal, principal
from web.errors import APIError, not_found
from web.services import services

ROLE_RANK = {"viewer": 0, "editor": 1, "owner": 2}


def parse_uuid(raw: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise not_found(what) from None


async def project_for(
    conn: Conn, raw_project_id: str, user_id: uuid.UUID, need: str = "viewer"
) -> Project:
    """The project as the caller sees it; 404 when not a member, 403 when the role is short."""
    project = await projects.for_member(conn, parse_uuid(raw_project_id, "project"), user_id)
    if project is None:
        raise not_found("project")
    if ROLE_RANK[project.role] < ROLE_RANK[need]:
        raise APIError(
            403,
            "forbidden",
            f"this needs the {need} role; you are {project.role}",
            details={"required_role": need, "role": project.role},
        )
    return project


async def caller_project(raw_project_id: str, need: str = "viewer") -> tuple[Project, Principal]:
    """The authenticated caller (401) and the project as they see it (404, 403), on a
    connection of its own."""
    caller = await principal()
    async with services().pool.acquire() as conn:
        project = await project_for(conn, raw_project_id, caller.user_id, need)
    return project, caller
