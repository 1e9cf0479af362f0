"""Container bookkeeping that needs the Temporal client: what the reconciler decides and tells.

These run on the main task queue (any worker); the Docker side of reconciliation runs on the
Docker host's queue (`activities/docker_containers.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from workflows.container_shared import (
    ClassifyInput,
    ClassifyOutput,
    ContainerStatus,
    NotifyOutput,
    NotifyVanishedInput,
    Status,
    VanishedContainer,
    VanishedInput,
)

LIVE_QUERY = "WorkflowType = 'ContainerWorkflow' AND ExecutionStatus = 'Running'"


def _age_s(created_at: str) -> float:
    if not created_at:
        return float("inf")
    head, _, rest = created_at.rstrip("Z").partition(".")
    fraction = "".join(ch for ch in rest if ch.isdigit())[:6] or "0"
    created = datetime.fromisoformat(f"{head}.{fraction}").replace(tzinfo=UTC)
    return (datetime.now(UTC) - created).total_seconds()


class ContainerControlActivities:
    def __init__(self, client: Client) -> None:
        self._client = client

    async def _running(self, workflow_id: str) -> bool:
        if not workflow_id:
            return False
        try:
            described = await self._client.get_workflow_handle(workflow_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return described.status == WorkflowExecutionStatus.RUNNING

    @activity.defn(name="containers_classify")
    async def classify(self, data: ClassifyInput) -> ClassifyOutput:
        """Orphans: labelled containers whose workflow no longer runs (past a grace period).
        Vanished: running workflows on this Docker host whose container is not running."""
        orphans = [
            c.container_id
            for c in data.containers
            if _age_s(c.created_at) >= data.grace_s and not await self._running(c.workflow_id)
        ]
        alive = {c.container_id for c in data.containers if c.status == "running"}
        vanished: list[VanishedContainer] = []
        async for execution in self._client.list_workflows(LIVE_QUERY):
            activity.heartbeat()
            try:
                status: ContainerStatus = await self._client.get_workflow_handle(
                    execution.id
                ).query("status", result_type=ContainerStatus)
            except RPCError:
                continue  # closed meanwhile, or no worker right now: next round
            if (
                status.docker_queue == data.docker_queue
                and status.status == Status.RUNNING
                and status.container_id
                and status.container_id not in alive
            ):
                vanished.append(VanishedContainer(execution.id, status.container_id))
        return ClassifyOutput(orphans=orphans, vanished=vanished)

    @activity.defn(name="containers_notify_vanished")
    async def notify_vanished(self, data: NotifyVanishedInput) -> NotifyOutput:
        notified = 0
        for item in data.items:
            try:
                await self._client.get_workflow_handle(item.workflow_id).signal(
                    "container_vanished", VanishedInput(item.container_id)
                )
                notified += 1
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
        return NotifyOutput(notified=notified)
