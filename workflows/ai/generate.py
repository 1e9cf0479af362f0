"""The code generation job: files proposed from a request."""

from __future__ import annotations

from temporalio import workflow

from workflows.ai.changes import propose
from workflows.ai.contract import (
    GatherInput,
    GatherOutput,
    GenerateInput,
    GenerateResult,
    SourceFile,
)
from workflows.ai.steps import AIJobWorkflow, ask, run_job
from workflows.shared import call


@workflow.defn(name="AICodeGeneration")
class CodeGenerationWorkflow(AIJobWorkflow):
    @workflow.run
    async def run(self, data: GenerateInput) -> GenerateResult:
        return await run_job(data.job, self._progress, lambda: self._generate(data))

    async def _generate(self, data: GenerateInput) -> GenerateResult:
        progress = self._progress
        files: list[SourceFile] = []
        if data.paths:
            progress.stage = "gathering files"
            gathered = await call(
                "ai_gather",
                GatherInput(data.job.project_id, list(data.paths), data.context_tokens),
                GatherOutput,
            )
            files = gathered.files
        answer = await ask(
            progress, data.job, "generate", "generate", files, {"prompt": data.prompt}
        )
        proposal = await propose(progress, data.job, files, answer.answer)
        return GenerateResult(**vars(proposal), cached=answer.cached)
