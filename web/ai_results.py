"""AI jobs as the REST layer reads them: the job's JSON body (its row, its usage, the progress
of a running job) and the changes of its result, typed, for `apply`."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.converter import value_to_type

from store import ai as store
from store.ai import Job
from web.services import services
from workflows.ai.contract import (
    AIProgress,
    Change,
    JobStatus,
    Kind,
)

PROGRESS_QUERY_TIMEOUT = timedelta(seconds=1)


def proposed_changes(job: Job) -> list[Change]:
    # Only the changes, not the whole result: applying must not depend on the other fields.
    if job.result is None or job.kind == Kind.REVIEW:
        return []
    found: list[Change] = value_to_type(list[Change], job.result.get("changes", []))
    return found


async def progress_of(job: Job) -> dict[str, Any] | None:
    if job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
        return None
    handle: WorkflowHandle[Any, Any] = services().temporal.get_workflow_handle(job.workflow_id)
    try:
        # Without a worker (a restart) a query waits for Temporal's own timeout, ~30 s: the job
        # row already answers the request, so progress gets a second at most.
        found: AIProgress = await handle.query(
            "progress", result_type=AIProgress, rpc_timeout=PROGRESS_QUERY_TIMEOUT
        )
    except Exception:  # best effort: the job row is the answer, progress only a hint
        return None
    return asdict(found)


async def job_body(job: Job) -> dict[str, Any]:
    """`GET .../ai/jobs/{id}`: the row's result is served as stored, since it is the result's
    JSON already (converting it there and back would only risk changing it)."""
    async with services().pool.acquire() as conn:
        usage = await store.usage_for_job(conn, job.id)
    body: dict[str, Any] = {
        "job_id": str(job.id),
        "kind": job.kind,
        "status": job.status,
        "usage": usage.public(),
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
        "applied_at": job.applied_at.isoformat() if job.applied_at else None,
    }
    if job.result is not None:
        body["result"] = job.result
    if job.error is not None:
        body["error"] = job.error
    progress = await progress_of(job)
    if progress is not None:
        body["progress"] = progress
    return body
