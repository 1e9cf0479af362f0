"""The one way to reach a project's container from outside the workflows: ensure it runs, read
its status, stop, restart or touch it, all through the project's `ContainerWorkflow`.

The API (the containers blueprint, the terminal, previews) and the AI jobs (`ai_ensure_container`)
use it alike, so every container is started the same way: the image is resolved and checked
here, a request a warm pool can serve names that pool, and the workflow is reached by
update-with-start (a second attempt when the workflow completed just as the update arrived).
It holds no Docker client: the workflow's activities run on the Docker host. Workflow code never
imports it, since it talks to Temporal.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from vaporform.settings.containers import ContainerSettings
from vaporform.temporal_setup import configured_pools
from workflows.containers.contract import (
    ContainerSpec,
    ContainerStatus,
    ContainerWorkflowInput,
    EnsureRunningInput,
    StopInput,
    TouchInput,
    pool_spec,
)
from workflows.containers.entity import ContainerWorkflow
from workflows.containers.names import (
    DEFAULT_IDLE_TIMEOUT_S,
    Status,
    container_workflow_id,
    normalise_image,
    pool_workflow_id,
)
from workflows.shared import search_attributes

T = TypeVar("T")

IMAGE_NAME = re.compile(r"^vaporform/runtime-[a-z0-9][a-z0-9._-]{0,63}(:[A-Za-z0-9._-]{1,64})?$")


class ContainerUnavailable(Exception):
    """Temporal did not answer: retry later."""


class InvalidImage(ValueError):
    def __init__(self, image: str) -> None:
        super().__init__("image must be one of the runtime images (GET /api/v1/images)")
        self.image = image


def checked_image(image: str) -> str:
    """`image` as Docker reads it (`name` is `name:latest`), if it names a runtime image."""
    image = normalise_image(image)
    if not IMAGE_NAME.match(image):
        raise InvalidImage(image)
    return image


def configured_image(project_config: Mapping[str, Any], default_image: str) -> str:
    """The project's `runtime.image`, else the default, as Docker reads it; not checked (the
    check answers where the container is started)."""
    runtime = project_config.get("runtime")
    configured = runtime.get("image") if isinstance(runtime, dict) else None
    return normalise_image(configured if isinstance(configured, str) else default_image)


def project_image(
    project_config: Mapping[str, Any], default_image: str, requested: str | None = None
) -> str:
    """The image a project's container runs: the one asked for, else the project's
    `runtime.image`, else the default; checked."""
    return checked_image(requested or configured_image(project_config, default_image))


@dataclass(frozen=True)
class ContainerHost:
    """The Docker host a client starts containers on, and what a new `ContainerWorkflow` is
    started with there."""

    docker_queue: str
    idle_timeout_s: int = DEFAULT_IDLE_TIMEOUT_S
    health_timeout_s: float = 20.0
    # Recorded in the workflow for its terminals and previews; None: readers use their settings.
    agent_url: str | None = None
    # image -> size of this host's warm pools. None: not known here, so a request a pool could
    # serve names that image's pool, and the claim finds none when no pool runs.
    pools: Mapping[str, int] | None = None


class ContainerClient:
    def __init__(self, temporal: Client, task_queue: str, host: ContainerHost) -> None:
        self._temporal = temporal
        self._task_queue = task_queue  # where the container workflows run
        self._host = host

    @classmethod
    def from_settings(
        cls,
        temporal: Client,
        task_queue: str,
        settings: ContainerSettings,
        agent_url: str | None = None,
    ) -> ContainerClient:
        pools = configured_pools(settings.default_image, settings.pool_size, settings.pool_images)
        host = ContainerHost(
            docker_queue=settings.docker_queue,
            idle_timeout_s=settings.idle_timeout_s,
            health_timeout_s=float(settings.health_timeout_s),
            agent_url=agent_url,
            pools=pools,
        )
        return cls(temporal, task_queue, host)

    def pool_for(self, spec: ContainerSpec) -> str | None:
        """The warm pool that can serve `spec` on this host: only exactly a pool's spec is."""
        if spec != pool_spec(spec.image):
            return None
        if self._host.pools is not None and self._host.pools.get(spec.image, 0) <= 0:
            return None
        return pool_workflow_id(self._host.docker_queue, spec.image)

    async def ensure(
        self, project_id: str, user_id: str, spec: ContainerSpec, *, reuse_running: bool = False
    ) -> ContainerStatus:
        """Start the project's container with `spec`, or find it running; answers once it runs,
        or failed with the reason. A running container of another spec is replaced, unless
        `reuse_running` takes it as it is."""
        spec = replace(spec, image=checked_image(spec.image))
        request = EnsureRunningInput(
            spec=spec,
            requested_by=user_id,
            pool_id=self.pool_for(spec),
            reuse_running=reuse_running,
        )
        host = self._host
        for attempt in range(2):
            operation = WithStartWorkflowOperation(
                ContainerWorkflow.run,
                ContainerWorkflowInput(
                    project_id=project_id,
                    user_id=user_id,
                    docker_queue=host.docker_queue,
                    agent_url=host.agent_url,
                    idle_timeout_s=host.idle_timeout_s,
                    health_timeout_s=host.health_timeout_s,
                ),
                id=container_workflow_id(project_id),
                task_queue=self._task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=search_attributes(project_id, user_id),
            )
            try:
                return await self._temporal.execute_update_with_start_workflow(
                    ContainerWorkflow.ensure_running, request, start_workflow_operation=operation
                )
            except RPCError as exc:
                # The workflow may complete (its container stopped) just as the update arrives:
                # the second attempt starts a fresh one.
                if attempt == 0 and exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.ABORTED):
                    continue
                raise ContainerUnavailable(str(exc)) from exc
        raise AssertionError("unreachable")

    async def status(self, project_id: str) -> ContainerStatus:
        """What the project's workflow says; `stopped` when there has never been one."""
        found = await self._on_workflow(
            project_id, lambda handle: handle.query(ContainerWorkflow.status)
        )
        if found is None:
            return ContainerStatus(project_id, container_workflow_id(project_id), Status.STOPPED)
        return found

    async def running_status(self, project_id: str) -> ContainerStatus | None:
        """The status while the project's container workflow runs, else None: for callers on a
        hot path (every file write). Describing the workflow is one round trip to the server,
        where a query to a completed one replays its whole history on a worker (~45 ms)."""
        handle = self._temporal.get_workflow_handle(container_workflow_id(project_id))
        try:
            described = await handle.describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise ContainerUnavailable(str(exc)) from exc
        if described.status != WorkflowExecutionStatus.RUNNING:
            return None
        return await self.status(project_id)

    async def stop(self, project_id: str, requested_by: str) -> ContainerStatus:
        stop = StopInput(requested_by=requested_by)
        stopped = await self._on_workflow(
            project_id, lambda handle: handle.execute_update(ContainerWorkflow.stop, stop)
        )
        if stopped is None:  # no running workflow: nothing to stop
            return await self.status(project_id)
        return stopped

    async def restart(self, project_id: str, requested_by: str) -> ContainerStatus | None:
        """The restarted container's status; None when there is none to restart."""
        restart = StopInput(requested_by=requested_by)
        try:
            return await self._on_workflow(
                project_id, lambda handle: handle.execute_update(ContainerWorkflow.restart, restart)
            )
        except WorkflowUpdateFailedError:  # never started
            return None

    async def touch(self, project_id: str, user_id: str) -> None:
        """Push the idle deadline back; nothing when no container runs."""
        touched = TouchInput(requested_by=user_id)
        await self._on_workflow(
            project_id, lambda handle: handle.signal(ContainerWorkflow.touch, touched)
        )

    async def running_count(self, user_id: uuid.UUID) -> int:
        """How many containers the user runs: the project workflows they started that still run.
        Counted in Temporal's visibility store, which can trail by a moment."""
        query = (
            f"WorkflowType = 'ContainerWorkflow' AND ExecutionStatus = 'Running' "
            f"AND UserId = '{user_id}'"
        )
        try:
            return (await self._temporal.count_workflows(query)).count
        except RPCError as exc:
            raise ContainerUnavailable(str(exc)) from exc

    async def _on_workflow(
        self,
        project_id: str,
        call: Callable[[WorkflowHandle[ContainerWorkflow, ContainerStatus]], Awaitable[T]],
    ) -> T | None:
        """`call` on the project's container workflow; None when it has none (never ran, or
        ended)."""
        handle = self._temporal.get_workflow_handle_for(
            ContainerWorkflow.run, container_workflow_id(project_id)
        )
        try:
            return await call(handle)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise ContainerUnavailable(str(exc)) from exc
            return None
