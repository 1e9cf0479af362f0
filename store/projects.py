"""Queries on `projects` and `project_members`.

Every read takes the caller's user id and joins on membership, so a project the caller does
not belong to is simply not found: the edge turns that None into a 404.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from store.db import Conn

ROLES = ("owner", "editor", "viewer")


@dataclass(frozen=True, slots=True)
class Project:
    id: UUID
    name: str
    description: str
    config: dict[str, Any]
    metadata: dict[str, Any]
    owner_id: UUID
    role: str  # the caller's role in this project
    created_at: datetime
    updated_at: datetime

    def public(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "description": self.description,
            "config": self.config,
            "metadata": self.metadata,
            "owner_id": str(self.owner_id),
            "role": self.role,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Member:
    user_id: UUID
    email: str
    name: str
    role: str
    created_at: datetime

    def public(self) -> dict[str, Any]:
        return {
            "user_id": str(self.user_id),
            "email": self.email,
            "name": self.name,
            "role": self.role,
            "created_at": self.created_at.isoformat(),
        }


_SELECT = """
    SELECT p.id, p.name, p.description, p.config, p.metadata, p.owner_id, m.role,
           p.created_at, p.updated_at
    FROM projects p JOIN project_members m ON m.project_id = p.id AND m.user_id = $1
                         AND p.deleted_at IS NULL
"""


async def create(
    conn: Conn,
    *,
    owner_id: UUID,
    name: str,
    description: str,
    config: dict[str, Any],
) -> Project:
    async with conn.transaction():
        project_id = await conn.fetchval(
            """
            INSERT INTO projects (name, description, config, owner_id)
            VALUES ($1, $2, $3, $4) RETURNING id
            """,
            name,
            description,
            config,
            owner_id,
        )
        await conn.execute(
            "INSERT INTO project_members (project_id, user_id, role) VALUES ($1, $2, 'owner')",
            project_id,
            owner_id,
        )
        project = await for_member(conn, project_id, owner_id)
    assert project is not None
    return project


async def for_member(conn: Conn, project_id: UUID, user_id: UUID) -> Project | None:
    row = await conn.fetchrow(_SELECT + " WHERE p.id = $2", user_id, project_id)
    return None if row is None else Project(**dict(row))


async def list_for_member(
    conn: Conn,
    user_id: UUID,
    *,
    limit: int,
    after: tuple[datetime, UUID] | None = None,
) -> list[Project]:
    """Newest first; `after` is the (created_at, id) of the last project of the previous page."""
    if after is None:
        rows = await conn.fetch(
            _SELECT + " ORDER BY p.created_at DESC, p.id DESC LIMIT $2", user_id, limit
        )
    else:
        rows = await conn.fetch(
            _SELECT + " WHERE (p.created_at, p.id) < ($2, $3)"
            " ORDER BY p.created_at DESC, p.id DESC LIMIT $4",
            user_id,
            after[0],
            after[1],
            limit,
        )
    return [Project(**dict(r)) for r in rows]


async def update(
    conn: Conn,
    project_id: UUID,
    user_id: UUID,
    *,
    name: str | None = None,
    description: str | None = None,
    config: dict[str, Any] | None = None,
) -> Project | None:
    await conn.execute(
        """
        UPDATE projects SET name = coalesce($2, name),
                            description = coalesce($3, description),
                            config = coalesce($4, config),
                            updated_at = now()
        WHERE id = $1
        """,
        project_id,
        name,
        description,
        config,
    )
    return await for_member(conn, project_id, user_id)


async def hide(conn: Conn, project_id: UUID) -> bool:
    """Mark the project deleted: from now on it answers 404 everywhere (every read here
    skips it). False when it was already hidden. The ProjectDeletion workflow purges it."""
    status = await conn.execute(
        "UPDATE projects SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL", project_id
    )
    return status == "UPDATE 1"


async def is_live(conn: Conn, project_id: UUID) -> bool:
    """The project exists and is not being deleted."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM projects WHERE id = $1 AND deleted_at IS NULL)",
            project_id,
        )
    )


async def purge(conn: Conn, project_id: UUID) -> bool:
    """Remove a hidden project's row, and with it (ON DELETE CASCADE) its members, files,
    versions, collaboration documents, chat and AI jobs; blobs no version names any more are
    then collected by the files-retention schedule. False when there was nothing to remove.
    A project that is not hidden is never purged."""
    status = await conn.execute(
        "DELETE FROM projects WHERE id = $1 AND deleted_at IS NOT NULL", project_id
    )
    return status == "DELETE 1"


async def members(conn: Conn, project_id: UUID) -> list[Member]:
    rows = await conn.fetch(
        """
        SELECT m.user_id, u.email, u.name, m.role, m.created_at
        FROM project_members m JOIN users u ON u.id = m.user_id
        WHERE m.project_id = $1 ORDER BY m.created_at, u.email
        """,
        project_id,
    )
    return [Member(**dict(r)) for r in rows]


async def member(conn: Conn, project_id: UUID, user_id: UUID) -> Member | None:
    row = await conn.fetchrow(
        """
        SELECT m.user_id, u.email, u.name, m.role, m.created_at
        FROM project_members m JOIN users u ON u.id = m.user_id
        WHERE m.project_id = $1 AND m.user_id = $2
        """,
        project_id,
        user_id,
    )
    return None if row is None else Member(**dict(row))


async def add_member(conn: Conn, project_id: UUID, user_id: UUID, role: str) -> Member | None:
    """The new member, or None when the user already belongs to the project."""
    status = await conn.execute(
        """
        INSERT INTO project_members (project_id, user_id, role) VALUES ($1, $2, $3)
        ON CONFLICT DO NOTHING
        """,
        project_id,
        user_id,
        role,
    )
    if status != "INSERT 0 1":
        return None
    return await member(conn, project_id, user_id)


async def other_owners(conn: Conn, project_id: UUID, user_id: UUID) -> int:
    """How many owners the project keeps if `user_id` stops being one (row-locked)."""
    rows = await conn.fetch(
        """
        SELECT user_id FROM project_members
        WHERE project_id = $1 AND role = 'owner' AND user_id <> $2 FOR UPDATE
        """,
        project_id,
        user_id,
    )
    return len(rows)


async def set_member_role(conn: Conn, project_id: UUID, user_id: UUID, role: str) -> Member | None:
    await conn.execute(
        "UPDATE project_members SET role = $3 WHERE project_id = $1 AND user_id = $2",
        project_id,
        user_id,
        role,
    )
    return await member(conn, project_id, user_id)


async def remove_member(conn: Conn, project_id: UUID, user_id: UUID) -> bool:
    status = await conn.execute(
        "DELETE FROM project_members WHERE project_id = $1 AND user_id = $2", project_id, user_id
    )
    return status == "DELETE 1"


@dataclass(frozen=True, slots=True)
class Standing:
    """What a (project, user) pair holds right now: the role (None: not a member), whether
    the account exists and is enabled, and whether the project exists."""

    role: str | None
    active: bool
    project: bool


async def standings(
    conn: Conn, pairs: Collection[tuple[UUID, UUID]]
) -> dict[tuple[UUID, UUID], Standing]:
    """The standing of every (project_id, user_id) pair, in one query (open sockets are
    re-checked with it; web/revocation.py)."""
    if not pairs:
        return {}
    rows = await conn.fetch(
        """
        SELECT w.project_id, w.user_id, m.role,
               u.id IS NOT NULL AND u.disabled_at IS NULL AS active,
               p.id IS NOT NULL AND p.deleted_at IS NULL AS project
        FROM unnest($1::uuid[], $2::uuid[]) AS w (project_id, user_id)
        LEFT JOIN users u ON u.id = w.user_id
        LEFT JOIN projects p ON p.id = w.project_id
        LEFT JOIN project_members m ON m.project_id = w.project_id AND m.user_id = w.user_id
        """,
        [p for p, _ in pairs],
        [u for _, u in pairs],
    )
    return {
        (r["project_id"], r["user_id"]): Standing(r["role"], r["active"], r["project"])
        for r in rows
    }


async def set_file_stats(conn: Conn, project_id: UUID, stats: dict[str, Any]) -> None:
    """Record what the project's live files add up to in `metadata.files`."""
    await conn.execute(
        """
        UPDATE projects SET metadata = jsonb_set(metadata, '{files}', $2::jsonb)
        WHERE id = $1
        """,
        project_id,
        stats,
    )


async def retention_policies(conn: Conn) -> list[tuple[UUID, int]]:
    """(project, versions to keep) of every project whose config sets
    `retention.keep_versions` to a number."""
    rows = await conn.fetch(
        """
        SELECT id, (config #>> '{retention,keep_versions}')::int AS keep FROM projects
        WHERE jsonb_typeof(config #> '{retention,keep_versions}') = 'number'
        """
    )
    return [(r["id"], r["keep"]) for r in rows]
