"""Audit-log side effects: events recorded from workflows (store/audit.py holds the table)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg
from temporalio import activity

from store import audit
from workflows.shared import AuditEventInput, AuditEventOutput


class AuditActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn(name="record_audit_event")
    async def record_audit_event(self, data: AuditEventInput) -> AuditEventOutput:
        entry = audit.Entry(
            action=data.action,
            actor_id=UUID(data.actor_id) if data.actor_id else None,
            project_id=UUID(data.project_id) if data.project_id else None,
            target=data.target,
            outcome=data.outcome,
            details=data.details,
            ip=data.ip,
            request_id=data.request_id,
            # A retried activity writes the same key again, and nothing more.
            event_key=data.event_key,
            occurred_at=datetime.fromisoformat(data.occurred_at) if data.occurred_at else None,
        )
        async with self._pool.acquire() as conn:
            recorded = await audit.append(conn, entry)
        return AuditEventOutput(recorded=recorded)
