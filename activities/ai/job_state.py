"""The job's rows and events: its state (committed, then announced on the project's jobs
channel) and the findings of a review."""

from __future__ import annotations

import json
from uuid import UUID

import asyncpg
from temporalio import activity

from collab.broker import Broker
from collab.channels import ai_jobs_channel
from store import ai as store
from workflows.ai.contract import SaveFindingsInput, StatusInput


class JobStateActivities:
    def __init__(self, pool: asyncpg.Pool, broker: Broker | None) -> None:
        self._pool = pool
        self._broker = broker

    @activity.defn(name="ai_set_status")
    async def set_status(self, data: StatusInput) -> bool:
        """Record the job's state, then announce it (after the commit, like every publish)."""
        async with self._pool.acquire() as conn:
            changed = await store.set_status(
                conn, UUID(data.job.job_id), data.status, result=data.result, error=data.error
            )
        if changed and self._broker is not None:
            message = {
                "type": "job",
                "job_id": data.job.job_id,
                "kind": data.job.kind,
                "status": data.status,
            }
            try:
                await self._broker.publish(
                    ai_jobs_channel(data.job.project_id), json.dumps(message).encode()
                )
            except Exception:  # the event is a hint; the row is the truth and is committed
                activity.logger.exception("could not announce the job state")
        return changed

    @activity.defn(name="ai_save_findings")
    async def save_findings(self, data: SaveFindingsInput) -> int:
        async with self._pool.acquire() as conn:
            await store.replace_findings(
                conn,
                UUID(data.job.job_id),
                UUID(data.job.project_id),
                [
                    store.Finding(
                        path=f.path,
                        file_version=f.file_version,
                        line_start=f.line_start,
                        line_end=f.line_end,
                        severity=f.severity,
                        category=f.category,
                        message=f.message,
                        suggestion=f.suggestion,
                        source=f.source,
                    )
                    for f in data.findings
                ],
            )
        return len(data.findings)
