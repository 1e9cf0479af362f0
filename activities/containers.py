"""Container bookkeeping that needs the Temporal client: what the reconciler decides and tells,
and the claim of a warm pool member (a local activity of `ContainerWorkflow`).

These run on the main task queue (any worker); the Docker side of reconciliation runs on the
Docker host's queue (`activities/docker/engine.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from workflows.containers.contract import (
    ContainerStatus,
    PoolClaimInput,
    PoolClaimOutput,
    PoolMembersGoneInput,
    PoolStatus,
    VanishedInput,
)
from workflows.containers.contract.reconcile import (
    ClassifyInput,
    ClassifyOutput,
    ManagedContainer,
    NotifyOutput,
    NotifyVanishedInput,
    PoolGone,
    VanishedContainer,
)
from workflows.containers.names import (
    POOL_NAME_PREFIX,
    Status,
    container_workflow_id,
    project_of_container_name,
)

LIVE_QUERY = "WorkflowType = 'ContainerWorkflow' AND ExecutionStatus = 'Running'"


def _owner(container: ManagedContainer) -> str:
    """The workflow that answers for a container: a claimed pool member (renamed to the
    project's name) belongs to the project's workflow, everything else to its label."""
    if container.pool_id:
        project_id = project_of_container_name(container.name)
        if project_id is not None:
            return container_workflow_id(project_id)
    return container.workflow_id


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

    async def _pool(self, pool_id: str) -> PoolStatus | None:
        try:
            status: PoolStatus = await self._client.get_workflow_handle(pool_id).query(
                "status", result_type=PoolStatus
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        if not await self._running(pool_id):
            return None  # a closed run still answers queries
        return status

    async def _pool_member_live(self, container: ManagedContainer, pool: PoolStatus | None) -> bool:
        """Ready in its pool, or claimed by a project whose workflow runs (not renamed yet)."""
        if pool is None:
            return False
        if any(m.container_id == container.container_id for m in pool.ready):
            return True
        for claim in pool.claims:
            if claim.member.container_id == container.container_id:
                return await self._running(container_workflow_id(claim.project_id))
        return False

    @activity.defn(name="containers_classify")
    async def classify(self, data: ClassifyInput) -> ClassifyOutput:
        """Orphans: labelled containers whose workflow no longer runs (past a grace period),
        and pool members their pool neither lists nor handed to a running project.
        Vanished: running workflows on this Docker host whose container is not running, and
        ready pool members the engine does not run."""
        pools: dict[str, PoolStatus | None] = {}
        for pool_id in sorted({c.pool_id for c in data.containers if c.pool_id}):
            pools[pool_id] = await self._pool(pool_id)
        orphans: list[str] = []
        for c in data.containers:
            if _age_s(c.created_at) < data.grace_s:
                continue
            if c.pool_id and c.name.lstrip("/").startswith(POOL_NAME_PREFIX):
                live = await self._pool_member_live(c, pools[c.pool_id])
            else:
                live = await self._running(_owner(c))
            if not live:
                orphans.append(c.container_id)
        alive = {c.container_id for c in data.containers if c.status == "running"}
        gone = [
            PoolGone(pool_id, missing)
            for pool_id, pool in pools.items()
            if pool is not None
            and (missing := [m.container_id for m in pool.ready if m.container_id not in alive])
        ]
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
        return ClassifyOutput(orphans=orphans, vanished=vanished, pools=gone)

    @activity.defn(name="containers_notify_vanished")
    async def notify_vanished(self, data: NotifyVanishedInput) -> NotifyOutput:
        notified = 0
        for item in data.items:
            notified += await self._signal(
                item.workflow_id, "container_vanished", VanishedInput(item.container_id)
            )
        for pool in data.pools:
            notified += await self._signal(
                pool.pool_id, "members_gone", PoolMembersGoneInput(pool.container_ids)
            )
        return NotifyOutput(notified=notified)

    async def _signal(self, workflow_id: str, name: str, arg: Any) -> bool:
        """Signal a workflow; False when it is not running (nothing left to tell)."""
        try:
            await self._client.get_workflow_handle(workflow_id).signal(name, arg)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            return False
        return True

    @activity.defn(name="containers_pool_claim")
    async def pool_claim(self, data: PoolClaimInput) -> PoolClaimOutput:
        """Ask the pool for a ready member; an absent or closed pool has none."""
        try:
            result: PoolClaimOutput = await self._client.get_workflow_handle(
                data.pool_id
            ).execute_update("claim", data, result_type=PoolClaimOutput)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return PoolClaimOutput(None)
            raise
        return result
