"""The debugging job: explain a failure and propose a fix."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from workflows.ai.changes import OUTPUT_TAIL, propose
from workflows.ai.contract import (
    CommandRun,
    DebugInput,
    DebugResult,
    GatherInput,
    GatherOutput,
)
from workflows.ai.steps import AIJobWorkflow, ask, run_job, running_container
from workflows.containers.contract import ExecInput, ExecOutput
from workflows.shared import call


@workflow.defn(name="AIDebug")
class DebugWorkflow(AIJobWorkflow):
    @workflow.run
    async def run(self, data: DebugInput) -> DebugResult:
        return await run_job(data.job, self._progress, lambda: self._debug(data))

    async def _debug(self, data: DebugInput) -> DebugResult:
        progress = self._progress
        output = data.error or ""
        exit_code: int | None = None
        if data.command:
            if data.container is None:
                raise ApplicationError("no container to run the command in")
            container, container_id = await running_container(progress, data.job, data.container)
            progress.stage = "running the command"
            ran = await call(
                "docker_exec",
                ExecInput(container_id, data.command, data.command_timeout_s),
                ExecOutput,
                timeout=timedelta(seconds=data.command_timeout_s + 30),
                heartbeat=timedelta(seconds=10),
                # A command is not idempotent: run it at most once.
                retry=RetryPolicy(maximum_attempts=1),
                task_queue=container.docker_queue,
            )
            exit_code = ran.exit_code
            combined = (ran.stdout + ("\n" if ran.stdout else "") + ran.stderr)[-OUTPUT_TAIL:]
            output = (output + "\n" + combined).strip()
        progress.stage = "gathering files"
        gathered = await call(
            "ai_gather",
            GatherInput(
                data.job.project_id,
                list(data.paths),
                data.context_tokens,
                mentioned_in=output or None,
            ),
            GatherOutput,
        )
        answer = await ask(
            progress,
            data.job,
            "debug",
            "debug",
            gathered.files,
            {"command": data.command, "exit_code": exit_code, "error": output},
        )
        proposal = await propose(progress, data.job, gathered.files, answer.answer)
        return DebugResult(
            **vars(proposal),
            command=CommandRun(data.command, exit_code) if data.command else None,
            cached=answer.cached,
        )
