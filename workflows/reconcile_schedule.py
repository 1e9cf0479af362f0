"""Create (or bring up to date) the Temporal Schedule that runs the reconciler of one host."""

from __future__ import annotations

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

from workflows.container_shared import RECONCILE_SCHEDULE_ID, ReconcileInput
from workflows.reconcile import ReconcileWorkflow


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
