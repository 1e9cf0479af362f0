"""`ContainerWorkflow`: one long-lived entity per project container (`container-<project_id>`).

It is the only thing that creates or removes a project's container, so concurrent requests
from several API nodes cannot race: its handlers are serialised by a lock. It provisions with
compensation (a step that fails undoes the steps before it), stops the container after an idle
deadline that `touch` pushes back, and continues as new before its history grows large. When
the container is stopped (or failed) and no handler runs, the workflow completes; the next
`ensure_running` (update-with-start) starts a fresh one.

Docker activities are called by name on the task queue of the Docker host that holds the
container (`ContainerWorkflowInput.docker_queue`), so no Docker code is imported here. Each one
heartbeats, so a worker killed in the middle of a Docker call is noticed within seconds
(`HEARTBEAT`) and the call is retried on another worker; every call is idempotent.

When `ensure_running` names a warm pool (`workflows/containers/pool.py`), provisioning first
claims a ready member and adopts it (rename, slot folder becomes the workspace); an empty pool
or a failed adoption falls back to the cold path (create, start, wait healthy).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

from workflows.containers.contract import (
    AdoptInput,
    ContainerInfo,
    ContainerRef,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    ContainerWorkflowInput,
    CreateContainerInput,
    CreateContainerOutput,
    DiscardMemberInput,
    EnsureRunningInput,
    ImageInfo,
    ImageRef,
    PoolClaimInput,
    PoolClaimOutput,
    PoolMember,
    RemovedOutput,
    StopContainerInput,
    StopInput,
    TouchInput,
    VanishedInput,
    WaitHealthyInput,
    WorkspaceInput,
    WorkspaceOutput,
)
from workflows.containers.names import DOCKER_RETRY, Status

T = TypeVar("T")

# Undoing must outlast a short engine hiccup: keep trying for about a minute.
COMPENSATION_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=10,
)
# A Docker activity that stops heartbeating for this long lost its worker: retry it elsewhere.
HEARTBEAT = timedelta(seconds=2)
# The claim is one update on the pool workflow; when the pool cannot answer fast, start cold.
CLAIM_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=2)
# Provisioning time, recorded through the SDK's meter (skipped on replay) with `path` warm or
# cold and `outcome` running or failed; exported with the SDK's metrics by the worker
# (vaporform/worker_metrics.py).
START_METRIC = "vaporform_container_start_seconds"


def failure_reason(err: BaseException) -> str:
    """The innermost message: what actually went wrong, not the activity wrapper."""
    while isinstance(err, ActivityError) and err.cause is not None:
        err = err.cause
    if isinstance(err, FailureError):
        return err.message
    return str(err) or type(err).__name__


@workflow.defn(name="ContainerWorkflow")
class ContainerWorkflow:
    @workflow.init
    def __init__(self, data: ContainerWorkflowInput) -> None:
        self._input = data
        self._state = data.state or ContainerState()
        self._lock = asyncio.Lock()
        self._wake = False
        self._vanished: str | None = None

    # --- main loop -------------------------------------------------------------------

    @workflow.run
    async def run(self, data: ContainerWorkflowInput) -> ContainerStatus:
        while True:
            await self._sleep_until_something_happens()
            if self._vanished is not None:
                async with self._lock:
                    await self._recover_vanished()
            if self._idle_expired() and not self._lock.locked():
                async with self._lock:
                    if self._idle_expired():
                        await self._teardown()
                        workflow.logger.info("container stopped after the idle deadline")
            if self._finished():
                return self._status()
            if self._history_is_long():
                await workflow.wait_condition(
                    lambda: workflow.all_handlers_finished() and not self._lock.locked()
                )
                workflow.continue_as_new(replace(self._input, state=self._state))

    async def _sleep_until_something_happens(self) -> None:
        if self._finished() or self._history_is_long() or self._idle_expired():
            return
        timeout: float | None = None
        deadline = self._deadline()
        if self._state.status == Status.RUNNING and deadline is not None:
            timeout = max((deadline - workflow.now()).total_seconds(), 0.001)
        self._wake = False
        with contextlib.suppress(TimeoutError):  # the idle deadline passed
            await workflow.wait_condition(
                lambda: self._wake or self._finished(), timeout=timeout, timeout_summary="idle"
            )

    def _finished(self) -> bool:
        return (
            self._state.status in (Status.STOPPED, Status.FAILED)
            and self._vanished is None
            and not self._lock.locked()
            and workflow.all_handlers_finished()
        )

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return (
            info.get_current_history_length() > self._input.max_history_events
            or info.is_continue_as_new_suggested()
        )

    def _deadline(self) -> datetime | None:
        raw = self._state.idle_deadline
        return datetime.fromisoformat(raw) if raw else None

    def _idle_expired(self) -> bool:
        deadline = self._deadline()
        return (
            self._state.status == Status.RUNNING
            and deadline is not None
            and workflow.now() >= deadline
        )

    def _push_deadline(self) -> None:
        deadline = workflow.now() + timedelta(seconds=self._input.idle_timeout_s)
        self._state.idle_deadline = deadline.isoformat()
        self._wake = True  # the main loop re-arms its timer on the new deadline

    # --- handlers --------------------------------------------------------------------

    @workflow.update
    async def ensure_running(self, data: EnsureRunningInput) -> ContainerStatus:
        async with self._lock:
            if self._state.status == Status.RUNNING and self._state.spec == data.spec:
                self._push_deadline()
                return self._status()
            if self._state.container_id is not None:
                await self._teardown()  # another spec was asked for: replace the container
            self._state.pool_id = data.pool_id
            await self._provision(data.spec, data.requested_by)
            self._wake = True
            return self._status()

    @ensure_running.validator
    def _validate_ensure_running(self, data: EnsureRunningInput) -> None:
        if data.spec.network not in ("none", "bridge"):
            raise ValueError(f"unknown network {data.spec.network!r}")

    @workflow.update
    async def stop(self, data: StopInput) -> ContainerStatus:
        async with self._lock:
            if self._state.container_id is not None or self._state.status != Status.STOPPED:
                await self._teardown()
            self._wake = True
            return self._status()

    @workflow.update
    async def restart(self, data: StopInput) -> ContainerStatus:
        async with self._lock:
            spec = self._state.spec
            if spec is None:
                raise ApplicationError("the container was never started", non_retryable=True)
            await self._teardown()
            await self._provision(spec, data.requested_by or self._state.started_by or "")
            self._wake = True
            return self._status()

    @workflow.signal
    def touch(self, data: TouchInput) -> None:
        if self._state.status == Status.RUNNING:
            self._push_deadline()

    @workflow.signal
    def container_vanished(self, data: VanishedInput) -> None:
        """From the reconciler: the engine no longer runs our container (e.g. it restarted)."""
        if self._state.status == Status.RUNNING and data.container_id == self._state.container_id:
            self._vanished = data.container_id
            self._wake = True

    @workflow.query
    def status(self) -> ContainerStatus:
        return self._status()

    def _status(self) -> ContainerStatus:
        spec = self._state.spec
        return ContainerStatus(
            project_id=self._input.project_id,
            workflow_id=workflow.info().workflow_id,
            status=self._state.status,
            container_id=self._state.container_id,
            image=spec.image if spec else None,
            ports=dict(self._state.ports),
            resources=spec.resources if spec else None,
            network=spec.network if spec else None,
            started_at=self._state.started_at,
            idle_deadline=self._state.idle_deadline,
            error=self._state.error,
            docker_queue=self._input.docker_queue,
            agent_url=self._input.agent_url,
        )

    # --- steps -----------------------------------------------------------------------

    async def _docker(
        self,
        name: str,
        arg: Any,
        result_type: type[T],
        *,
        timeout_s: float = 30,
        retry: RetryPolicy = DOCKER_RETRY,
    ) -> T:
        result: T = await workflow.execute_activity(
            name,
            arg,
            result_type=result_type,
            task_queue=self._input.docker_queue,
            start_to_close_timeout=timedelta(seconds=timeout_s),
            heartbeat_timeout=HEARTBEAT,
            retry_policy=retry,
        )
        return result

    async def _provision(self, spec: ContainerSpec, requested_by: str) -> None:
        state = self._state
        state.status, state.spec, state.error = Status.PROVISIONING, spec, None
        state.started_by = requested_by
        began = workflow.now()
        if state.pool_id and await self._adopt_pooled(spec, state.pool_id):
            self._record_start(began, "warm", "running")
            return
        created: str | None = None
        try:
            await self._docker("docker_ensure_image", ImageRef(spec.image), ImageInfo)
            workspace = await self._docker(
                "docker_prepare_workspace", WorkspaceInput(self._input.project_id), WorkspaceOutput
            )
            made = await self._docker(
                "docker_create_container",
                CreateContainerInput(
                    project_id=self._input.project_id,
                    workflow_id=workflow.info().workflow_id,
                    created_by=requested_by,
                    spec=spec,
                    workspace=workspace.path,
                ),
                CreateContainerOutput,
            )
            created = state.container_id = made.container_id
            await self._docker("docker_start_container", ContainerRef(created), ContainerInfo)
            info = await self._docker(
                "docker_wait_healthy",
                WaitHealthyInput(created, self._input.health_timeout_s),
                ContainerInfo,
                timeout_s=self._input.health_timeout_s + 10,
            )
        except (ActivityError, ApplicationError) as err:
            reason = failure_reason(err)
            workflow.logger.warning("provisioning failed: %s", reason)
            if created is not None:
                # Compensation, in reverse: the created container is the only thing to undo
                # (the image and the workspace directory are shared and kept).
                await self._docker(
                    "docker_remove_container",
                    ContainerRef(created),
                    RemovedOutput,
                    retry=COMPENSATION_RETRY,
                )
            state.status, state.error = Status.FAILED, reason
            state.container_id, state.ports, state.started_at = None, {}, None
            state.idle_deadline = None
            self._record_start(began, "cold", "failed")
            return
        self._running(info)
        self._record_start(began, "cold", "running")

    @staticmethod
    def _record_start(began: datetime, path: str, outcome: str) -> None:
        workflow.metric_meter().create_histogram_float(
            START_METRIC, "Time to provision a project container", "s"
        ).record((workflow.now() - began).total_seconds(), {"path": path, "outcome": outcome})

    def _running(self, info: ContainerInfo) -> None:
        state = self._state
        state.status, state.ports = Status.RUNNING, dict(info.ports)
        state.started_at = info.started_at or workflow.now().isoformat()
        state.generation += 1
        self._push_deadline()

    async def _adopt_pooled(self, spec: ContainerSpec, pool_id: str) -> bool:
        """Claim a ready container of the warm pool and make it the project's; False: go cold."""
        try:
            claimed = await workflow.execute_local_activity(
                "containers_pool_claim",
                PoolClaimInput(
                    pool_id=pool_id,
                    # Deterministic: a claim replayed after a crash gets the same member back.
                    request_id=str(workflow.uuid4()),
                    project_id=self._input.project_id,
                    spec=spec,
                ),
                result_type=PoolClaimOutput,
                start_to_close_timeout=timedelta(seconds=5),
                retry_policy=CLAIM_RETRY,
            )
        except ActivityError as err:
            workflow.logger.warning("no warm container (%s): cold start", failure_reason(err))
            return False
        member: PoolMember | None = claimed.member
        if member is None:
            return False
        self._state.container_id = member.container_id
        try:
            info = await self._docker(
                "docker_adopt_pooled",
                AdoptInput(self._input.project_id, workflow.info().workflow_id, member),
                ContainerInfo,
                timeout_s=60,
            )
        except ActivityError as err:
            workflow.logger.warning("adopting a warm container failed: %s", failure_reason(err))
            await self._docker(
                "docker_pool_discard_member",
                DiscardMemberInput(member.slot_id, member.container_id),
                RemovedOutput,
                retry=COMPENSATION_RETRY,
            )
            self._state.container_id = None
            return False
        self._running(info)
        return True

    async def _teardown(self) -> None:
        state = self._state
        container_id = state.container_id
        if container_id is not None:
            state.status = Status.STOPPING
            try:
                await self._docker(
                    "docker_stop_container",
                    StopContainerInput(container_id, timeout_s=5),
                    ContainerInfo,
                )
                await self._docker(
                    "docker_remove_container",
                    ContainerRef(container_id),
                    RemovedOutput,
                    retry=COMPENSATION_RETRY,
                )
            except ActivityError as err:
                # Left for the reconciler, which removes labelled containers with no workflow.
                state.status, state.error = Status.FAILED, failure_reason(err)
                state.container_id, state.ports, state.idle_deadline = None, {}, None
                return
        state.status, state.error = Status.STOPPED, None
        state.container_id, state.ports, state.idle_deadline = None, {}, None

    async def _recover_vanished(self) -> None:
        vanished, self._vanished = self._vanished, None
        if vanished is None or vanished != self._state.container_id or self._state.spec is None:
            return
        workflow.logger.warning("container %s vanished; provisioning again", vanished[:12])
        # Whatever is left of it (an exited container after an engine restart) goes first.
        await self._docker(
            "docker_remove_container",
            ContainerRef(vanished),
            RemovedOutput,
            retry=COMPENSATION_RETRY,
        )
        self._state.container_id = None
        await self._provision(self._state.spec, self._state.started_by or "")
