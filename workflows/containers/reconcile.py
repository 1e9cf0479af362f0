"""The reconciler, run by a Temporal Schedule every few minutes per Docker host.

Crashes of the API, the worker or the engine must never leave a container leaking or a project
stuck: labelled containers whose workflow no longer runs are removed (for warm pool members:
that their pool neither lists them nor handed them to a running project), and running
workflows whose container vanished are told (they provision again or report `failed`; a pool
drops the member and makes another).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.containers.contract import ContainerRef, RemovedOutput
from workflows.containers.contract.reconcile import (
    ClassifyInput,
    ClassifyOutput,
    ListContainersInput,
    ListContainersOutput,
    NotifyOutput,
    NotifyVanishedInput,
    ReconcileInput,
    ReconcileOutput,
)
from workflows.containers.names import DOCKER_RETRY


@workflow.defn(name="ContainerReconcile")
class ReconcileWorkflow:
    @workflow.run
    async def run(self, data: ReconcileInput) -> ReconcileOutput:
        listed = await workflow.execute_activity(
            "docker_list_containers",
            ListContainersInput(),
            result_type=ListContainersOutput,
            task_queue=data.docker_queue,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DOCKER_RETRY,
        )
        verdict = await workflow.execute_activity(
            "containers_classify",
            ClassifyInput(data.docker_queue, listed.items, data.grace_s),
            result_type=ClassifyOutput,
            start_to_close_timeout=timedelta(minutes=2),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=DOCKER_RETRY,
        )
        removed: list[str] = []
        for container_id in verdict.orphans:
            result = await workflow.execute_activity(
                "docker_remove_container",
                ContainerRef(container_id),
                result_type=RemovedOutput,
                task_queue=data.docker_queue,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=DOCKER_RETRY,
            )
            if result.removed:
                removed.append(container_id)
        if verdict.vanished or verdict.pools:
            await workflow.execute_activity(
                "containers_notify_vanished",
                NotifyVanishedInput(verdict.vanished, verdict.pools),
                result_type=NotifyOutput,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=DOCKER_RETRY,
            )
        return ReconcileOutput(removed=removed, vanished=[v.container_id for v in verdict.vanished])
