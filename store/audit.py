"""Queries on `audit_events`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from store.db import Conn


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: int
    event_key: str
    project_id: UUID | None
    actor_id: UUID | None
    action: str
    details: dict[str, Any]
    created_at: datetime


async def record(
    conn: Conn,
    *,
    event_key: str,
    action: str,
    project_id: UUID | None,
    actor_id: UUID | None,
    details: dict[str, Any],
) -> bool:
    """Record an event once per `event_key`; False when it was already there."""
    status = await conn.execute(
        """
        INSERT INTO audit_events (event_key, project_id, actor_id, action, details)
        VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_key) DO NOTHING
        """,
        event_key,
        project_id,
        actor_id,
        action,
        details,
    )
    return status.endswith(" 1")


async def for_project(conn: Conn, project_id: UUID) -> list[AuditEvent]:
    rows = await conn.fetch(
        "SELECT * FROM audit_events WHERE project_id = $1 ORDER BY created_at DESC, id DESC",
        project_id,
    )
    return [AuditEvent(**dict(r)) for r in rows]
