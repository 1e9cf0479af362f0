"""Ensure a project's container the AI jobs' way: the real `ai_ensure_container` activity, run by
the session's worker on its task queue, called by name from a small workflow of the test's own
(as the AI workflows call it, `workflows/ai/steps.py`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy

from vaporform.config import Config
from worker import sandboxed_worker
from workflows.ai.contract import ContainerTarget, EnsureContainerInput, EnsureContainerOutput


@dataclass(frozen=True)
class AIEnsureInput:
    task_queue: str  # where the session's worker runs the AI activities
    request: EnsureContainerInput


@workflow.defn(name="TestEnsureContainerTheAIWay", sandboxed=False)
class EnsureTheAIWay:
    @workflow.run
    async def run(self, data: AIEnsureInput) -> EnsureContainerOutput:
        result: EnsureContainerOutput = await workflow.execute_activity(
            "ai_ensure_container",
            data.request,
            result_type=EnsureContainerOutput,
            task_queue=data.task_queue,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        return result


def target(config: Config, image: str | None = None) -> ContainerTarget:
    """What `POST .../ai/...` hands a job for the project's container (web/blueprints/ai.py)."""
    settings = config.containers
    return ContainerTarget(
        docker_queue=settings.docker_queue,
        image=image or settings.default_image,
        idle_timeout_s=settings.idle_timeout_s,
        health_timeout_s=float(settings.health_timeout_s),
    )


async def ensure_the_ai_way(
    client: Client, config: Config, project_id: str, user_id: str, image: str | None = None
) -> EnsureContainerOutput:
    queue = f"ai-ensure-{uuid.uuid4().hex[:12]}"
    async with sandboxed_worker(client, task_queue=queue, workflows=[EnsureTheAIWay]):
        result: EnsureContainerOutput = await client.execute_workflow(
            EnsureTheAIWay.run,
            AIEnsureInput(
                config.task_queue,
                EnsureContainerInput(project_id, user_id, target(config, image)),
            ),
            id=f"test-ai-ensure-{uuid.uuid4().hex[:12]}",
            task_queue=queue,
        )
    return result
