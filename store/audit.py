"""The audit log, `audit_events`: one row per mutating action, append-only.

Rows are only ever inserted; PostgreSQL refuses UPDATE, DELETE and TRUNCATE of the table
(migration 010). The API records an action in the transaction that makes it, where it has one,
so an action and its row commit together; Temporal activities record with an `event_key`, so a
retried activity writes its row once. Pages are read newest first by `(created_at, id)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from store.db import Conn

OUTCOMES = ("success", "failure", "denied")


@dataclass(frozen=True, slots=True)
class Entry:
    """An action to record. `target` names what it acted on (a path, a user id, a job id);
    `outcome` is success, failure (a wrong password, a reused token) or denied."""

    action: str
    actor_id: UUID | None = None
    project_id: UUID | None = None
    target: str | None = None
    outcome: str = "success"
    details: Mapping[str, Any] = field(default_factory=dict)
    ip: str | None = None
    request_id: str | None = None
    event_key: str | None = None
    occurred_at: datetime | None = None  # None: now


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: int
    created_at: datetime
    action: str
    outcome: str
    actor_id: UUID | None
    project_id: UUID | None
    target: str | None
    request_id: str | None
    ip: str | None
    details: dict[str, Any]
    event_key: str | None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "action": self.action,
            "outcome": self.outcome,
            "actor_id": None if self.actor_id is None else str(self.actor_id),
            "project_id": None if self.project_id is None else str(self.project_id),
            "target": self.target,
            "request_id": self.request_id,
            "ip": self.ip,
            "details": self.details,
        }


_COLUMNS = (
    "id, created_at, action, outcome, actor_id, project_id, target, request_id, ip, details, "
    "event_key"
)


async def append(conn: Conn, entry: Entry) -> bool:
    """Record `entry`; False when its `event_key` was recorded already."""
    status = await conn.execute(
        """
        INSERT INTO audit_events (event_key, project_id, actor_id, action, target, outcome,
                                  request_id, ip, details, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, coalesce($10, now()))
        ON CONFLICT (event_key) DO NOTHING
        """,
        entry.event_key,
        entry.project_id,
        entry.actor_id,
        entry.action,
        entry.target,
        entry.outcome,
        entry.request_id,
        entry.ip,
        dict(entry.details),
        entry.occurred_at,
    )
    return status.endswith(" 1")


@dataclass(frozen=True, slots=True)
class Filter:
    """What a page is limited to. `action` is one action, or a family when it ends in `.*`
    (`auth.*`: every auth event)."""

    actor_id: UUID | None = None
    project_id: UUID | None = None
    action: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def page(
    conn: Conn, where: Filter, *, limit: int, after: tuple[datetime, int] | None = None
) -> list[AuditEvent]:
    """Up to `limit` events matching `where`, newest first, older than `after` (the
    `(created_at, id)` of the previous page's last event)."""
    clauses: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if where.actor_id is not None:
        clauses.append(f"actor_id = {arg(where.actor_id)}")
    if where.project_id is not None:
        clauses.append(f"project_id = {arg(where.project_id)}")
    if where.action is not None:
        if where.action.endswith(".*"):
            clauses.append(f"starts_with(action, {arg(where.action[:-1])})")
        else:
            clauses.append(f"action = {arg(where.action)}")
    if where.outcome is not None:
        clauses.append(f"outcome = {arg(where.outcome)}")
    if where.since is not None:
        clauses.append(f"created_at >= {arg(where.since)}")
    if where.until is not None:
        clauses.append(f"created_at < {arg(where.until)}")
    if after is not None:
        clauses.append(f"(created_at, id) < ({arg(after[0])}, {arg(after[1])})")
    sql = f"SELECT {_COLUMNS} FROM audit_events"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += f" ORDER BY created_at DESC, id DESC LIMIT {arg(limit)}"
    return [_event(row) for row in await conn.fetch(sql, *args)]


def _event(row: asyncpg.Record) -> AuditEvent:
    return AuditEvent(**dict(row))
