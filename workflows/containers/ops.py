"""Short workflows that carry one Docker call to the right Docker host for the API.

The API holds no Docker client for these: it starts one of these on the main queue, and the
activity runs on the queue of the host that holds the container.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.containers.contract import (
    ExecOutput,
    ExecWorkflowInput,
    ListImagesInput,
    ListImagesOutput,
    ListImagesWorkflowInput,
)
from workflows.containers.names import DOCKER_RETRY


@workflow.defn(name="ContainerExec")
class ExecWorkflow:
    @workflow.run
    async def run(self, data: ExecWorkflowInput) -> ExecOutput:
        result: ExecOutput = await workflow.execute_activity(
            "docker_exec",
            data.exec,
            result_type=ExecOutput,
            task_queue=data.docker_queue,
            start_to_close_timeout=timedelta(seconds=data.exec.timeout_s + 30),
            heartbeat_timeout=timedelta(seconds=10),
            # A command is not idempotent: run it at most once.
            retry_policy=RetryPolicy(maximum_attempts=1),
        )
        return result


@workflow.defn(name="ListRuntimeImages")
class ListImagesWorkflow:
    @workflow.run
    async def run(self, data: ListImagesWorkflowInput) -> ListImagesOutput:
        result: ListImagesOutput = await workflow.execute_activity(
            "docker_list_images",
            ListImagesInput(prefix=data.prefix),
            result_type=ListImagesOutput,
            task_queue=data.docker_queue,
            start_to_close_timeout=timedelta(seconds=15),
            retry_policy=DOCKER_RETRY,
        )
        return result
