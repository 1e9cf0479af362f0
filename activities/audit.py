"""Audit-log side effects."""

from __future__ import annotations

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
        async with self._pool.acquire() as conn:
            recorded = await audit.record(
                conn,
                event_key=data.event_key,
                action=data.action,
                project_id=UUID(data.project_id) if data.project_id else None,
                actor_id=UUID(data.actor_id) if data.actor_id else None,
                details=data.details,
            )
        return AuditEventOutput(recorded=recorded)
