"""Steps every AI job workflow shares: calling the AI activities, recording the job's state,
and turning any failure into a job error with a stable code.

Deterministic: activities are called by name, nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, TimeoutError

from workflows.ai.contract import (
    AIProgress,
    AskInput,
    AskOutput,
    ContainerTarget,
    EnsureContainerInput,
    EnsureContainerOutput,
    JobRef,
    JobResult,
    JobStatus,
    SourceFile,
    StatusInput,
    result_json,
)
from workflows.ai.errors import CONTAINER_UNAVAILABLE, ERROR_CODES, PROVIDER_RETRY
from workflows.shared import call

T = TypeVar("T")
R = TypeVar("R", bound=JobResult)


class AIJobWorkflow:
    """What every AI job workflow has: its progress and the `progress` query that reads it.

    Subclasses carry `@workflow.defn` and their own `@workflow.run`; temporalio registers the
    query from here, as it collects the members of the class and of its bases.
    """

    def __init__(self) -> None:
        self._progress = AIProgress()

    @workflow.query
    def progress(self) -> AIProgress:
        return self._progress


async def ask(
    progress: AIProgress,
    job: JobRef,
    step: str,
    task: str,
    files: list[SourceFile],
    payload: dict[str, Any],
) -> AskOutput:
    progress.stage, progress.detail = "asking the model", step
    answer = await call(
        "ai_ask",
        AskInput(job=job, step=step, task=task, files=files, payload=payload),
        AskOutput,
        # A long streamed answer takes minutes; the heartbeat shows it is still arriving.
        timeout=timedelta(minutes=10),
        heartbeat=timedelta(seconds=60),
        retry=PROVIDER_RETRY,
    )
    progress.model_calls += answer.calls
    return answer


async def running_container(
    progress: AIProgress, job: JobRef, target: ContainerTarget
) -> tuple[EnsureContainerOutput, str]:
    """The project's container, started if need be, and its id; the job fails without one."""
    progress.stage = "starting the container"
    container = await call(
        "ai_ensure_container",
        EnsureContainerInput(job.project_id, job.user_id, target),
        EnsureContainerOutput,
        timeout=timedelta(minutes=2),
    )
    if not container.running or not container.container_id:
        raise ApplicationError(
            f"the project's container is not running: {container.error}",
            type=CONTAINER_UNAVAILABLE,
            non_retryable=True,
        )
    return container, container.container_id


def describe(err: BaseException) -> dict[str, Any]:
    """The job error `{code, message, details?}` of a failure: the innermost application
    error says what went wrong (and, when it carries a dict, the details)."""
    cause: BaseException | None = err
    while isinstance(cause, ActivityError | FailureError) and not isinstance(
        cause, ApplicationError | TimeoutError
    ):
        cause = cause.cause
    if isinstance(cause, ApplicationError):
        code = ERROR_CODES.get(cause.type or "", "ai_job_failed")
        found: dict[str, Any] = {"code": code, "message": cause.message}
        if cause.details and isinstance(cause.details[0], dict):
            found["details"] = cause.details[0]
        return found
    if isinstance(cause, TimeoutError):
        return {"code": "ai_timeout", "message": "a step of the job ran out of time"}
    return {"code": "ai_job_failed", "message": str(err) or type(err).__name__}


async def run_job(job: JobRef, progress: AIProgress, body: Callable[[], Awaitable[R]]) -> R:
    """Mark the job running, run `body`, record its result (as the JSON the API serves), or
    its error and fail."""
    await call("ai_set_status", StatusInput(job, JobStatus.RUNNING), bool)
    progress.stage = "running"
    try:
        result = await body()
    except (ActivityError, ApplicationError, FailureError) as err:
        error = describe(err)
        progress.stage, progress.detail = "failed", error["message"]
        await call("ai_set_status", StatusInput(job, JobStatus.FAILED, error=error), bool)
        raise ApplicationError(error["message"], type=error["code"], non_retryable=True) from err
    await call(
        "ai_set_status",
        StatusInput(job, JobStatus.SUCCEEDED, result=result_json(result)),
        bool,
    )
    progress.stage, progress.detail = "succeeded", ""
    return result
