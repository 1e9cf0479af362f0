"""The Docker steps of `ContainerWorkflow`: provision a container (a warm pool member adopted,
or cold: image, workspace, create, start, healthy, with compensation), tear it down, replace
one that vanished.

The steps keep no state of their own: they change the workflow's `ContainerState` in place.
Docker activities are called by name on the task queue of the Docker host that holds the
container (`ContainerWorkflowInput.docker_queue`). Each one heartbeats, so a worker killed in
the middle of a Docker call is noticed within seconds (`HEARTBEAT`) and the call is retried on
another worker; every call is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable
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
    ContainerWorkflowInput,
    CreateContainerInput,
    CreateContainerOutput,
    DiscardMemberInput,
    ImageInfo,
    ImageRef,
    PoolClaimInput,
    PoolClaimOutput,
    PoolMember,
    RemovedOutput,
    StopContainerInput,
    WaitHealthyInput,
    WorkspaceInput,
    WorkspaceOutput,
)
from workflows.containers.names import COMPENSATION_RETRY, DOCKER_RETRY, START_METRIC, Status
from workflows.shared import call

T = TypeVar("T")

# A Docker activity that stops heartbeating for this long lost its worker: retry it elsewhere.
HEARTBEAT = timedelta(seconds=2)
# The claim is one update on the pool workflow; when the pool cannot answer fast, start cold.
CLAIM_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=2)


def failure_reason(err: BaseException) -> str:
    """The innermost message: what actually went wrong, not the activity wrapper."""
    while isinstance(err, ActivityError) and err.cause is not None:
        err = err.cause
    if isinstance(err, FailureError):
        return err.message
    return str(err) or type(err).__name__


class ContainerSteps:
    def __init__(
        self,
        data: ContainerWorkflowInput,
        state: ContainerState,
        on_running: Callable[[], None],
    ) -> None:
        self._input = data
        self._state = state
        # The workflow's own bookkeeping once a container runs (its idle deadline).
        self._on_running = on_running

    async def _docker(
        self,
        name: str,
        arg: Any,
        result_type: type[T],
        *,
        timeout_s: float = 30,
        retry: RetryPolicy = DOCKER_RETRY,
    ) -> T:
        return await call(
            name,
            arg,
            result_type,
            timeout=timedelta(seconds=timeout_s),
            retry=retry,
            heartbeat=HEARTBEAT,
            task_queue=self._input.docker_queue,
        )

    async def provision(self, spec: ContainerSpec, requested_by: str) -> None:
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
        self._on_running()

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

    async def teardown(self) -> None:
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

    async def replace_vanished(self, container_id: str, spec: ContainerSpec) -> None:
        """Provision again in place of a container the engine lost."""
        # Whatever is left of it (an exited container after an engine restart) goes first.
        await self._docker(
            "docker_remove_container",
            ContainerRef(container_id),
            RemovedOutput,
            retry=COMPENSATION_RETRY,
        )
        self._state.container_id = None
        await self.provision(spec, self._state.started_by or "")
