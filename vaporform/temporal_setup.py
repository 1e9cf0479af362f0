"""What the client side sets up on Temporal: schedules, warm pools, and signal-with-starts.

The worker calls the `ensure_*` functions at start (each is idempotent: a later start finds what
an earlier one made and brings it up to date); the API and the workspace watcher signal the
versioning entity of a project when its files change.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from workflows.containers.contract import PoolInput, PoolResizeInput, pool_spec
from workflows.containers.contract.reconcile import ReconcileInput
from workflows.containers.names import RECONCILE_SCHEDULE_ID, normalise_image, pool_workflow_id
from workflows.containers.pool import ContainerPoolWorkflow
from workflows.containers.reconcile import ReconcileWorkflow
from workflows.files.contract import (
    RETENTION_INTERVAL,
    RETENTION_SCHEDULE_ID,
    FilesChanged,
    RetentionInput,
    VersioningState,
    versioning_workflow_id,
)
from workflows.files.versioning import RetentionWorkflow, VersioningWorkflow
from workflows.shared import search_attributes

# --- warm pools ------------------------------------------------------------------------------


def configured_pools(
    default_image: str, default_size: int, others: dict[str, int]
) -> dict[str, int]:
    """{image: size} of every pool the settings ask for (size 0: drain it)."""
    sizes = {normalise_image(image): size for image, size in others.items()}
    sizes[normalise_image(default_image)] = default_size
    return sizes


async def ensure_pools(
    client: Client,
    task_queue: str,
    docker_queue: str,
    sizes: dict[str, int],
    health_timeout_s: float = 20.0,
) -> list[str]:
    """Signal-with-start each pool with its size; a size of 0 drains a running pool (it then
    completes). Returns the ids of the pools asked to run."""
    started: list[str] = []
    for image, size in sorted(sizes.items()):
        pool_id = pool_workflow_id(docker_queue, image)
        resize = PoolResizeInput(size)
        if size <= 0:
            try:
                await client.get_workflow_handle(pool_id).signal(
                    ContainerPoolWorkflow.resize, resize
                )
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
            continue
        await client.start_workflow(
            ContainerPoolWorkflow.run,
            PoolInput(
                docker_queue=docker_queue,
                spec=pool_spec(image),
                size=size,
                health_timeout_s=health_timeout_s,
            ),
            id=pool_id,
            task_queue=task_queue,
            start_signal="resize",
            start_signal_args=[resize],
        )
        started.append(pool_id)
    return started


# --- the reconciler's schedule, one per Docker host -------------------------------------------


def reconcile_schedule_id(docker_queue: str) -> str:
    return f"{RECONCILE_SCHEDULE_ID}-{docker_queue}"


def _schedule(task_queue: str, docker_queue: str, every: timedelta) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ReconcileWorkflow.run,
            ReconcileInput(docker_queue=docker_queue),
            id=f"container-reconcile-{docker_queue}",
            task_queue=task_queue,
            execution_timeout=timedelta(minutes=10),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        # A slow round is never run twice at once; a missed one is simply skipped.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_reconcile_schedule(
    client: Client, task_queue: str, docker_queue: str, every: timedelta
) -> str:
    schedule_id = reconcile_schedule_id(docker_queue)
    wanted = _schedule(task_queue, docker_queue, every)
    try:
        await client.create_schedule(schedule_id, wanted)
    except ScheduleAlreadyRunningError:

        def _update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=wanted)

        await client.get_schedule_handle(schedule_id).update(_update)
    return schedule_id


# --- file retention ----------------------------------------------------------------------------


async def ensure_retention_schedule(client: Client, task_queue: str) -> None:
    """Create the hourly retention schedule once; later starts find it and leave it."""
    with contextlib.suppress(ScheduleAlreadyRunningError):
        await client.create_schedule(
            RETENTION_SCHEDULE_ID,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    RetentionWorkflow.run,
                    RetentionInput(),
                    id=f"{RETENTION_SCHEDULE_ID}-run",
                    task_queue=task_queue,
                ),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=RETENTION_INTERVAL)]),
                policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            ),
        )


# --- the versioning entity ----------------------------------------------------------------------


async def signal_files_changed(
    client: Client, task_queue: str, project_id: str, paths: list[str] | None, origin: str
) -> None:
    """Signal-with-start the project's versioning entity; `paths=None` asks for a full scan."""
    await client.start_workflow(
        VersioningWorkflow.run,
        VersioningState(project_id=project_id),
        id=versioning_workflow_id(project_id),
        task_queue=task_queue,
        start_signal="files_changed",
        start_signal_args=[FilesChanged(paths=paths or [], origin=origin, full_scan=paths is None)],
        search_attributes=search_attributes(project_id),
    )
