"""`CodeReviewWorkflow`: gather files within a token budget, run ruff, ask the model with ruff's
findings, keep only findings whose lines exist, persist them."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.ai.contract import (
    FileRef,
    FindingData,
    GatherInput,
    GatherOutput,
    LintInput,
    LintOutput,
    ReviewInput,
    ReviewResult,
    SaveFindingsInput,
)
from workflows.ai.findings import check_findings, finding_public
from workflows.ai.steps import AIJobWorkflow, ask, run_job
from workflows.shared import call


@workflow.defn(name="AICodeReview")
class CodeReviewWorkflow(AIJobWorkflow):
    @workflow.run
    async def run(self, data: ReviewInput) -> ReviewResult:
        return await run_job(data.job, self._progress, lambda: self._review(data))

    async def _review(self, data: ReviewInput) -> ReviewResult:
        progress = self._progress
        progress.stage = "gathering files"
        gathered = await call(
            "ai_gather",
            GatherInput(data.job.project_id, data.paths, data.context_tokens),
            GatherOutput,
        )
        progress.stage = "running ruff"
        lint = await call(
            "ai_lint", LintInput(gathered.files), LintOutput, timeout=timedelta(minutes=2)
        )
        answer = await ask(
            progress,
            data.job,
            "review",
            "review",
            gathered.files,
            {"ruff": [finding_public(f) for f in lint.findings]},
        )
        proposed = [FindingData(**raw) for raw in answer.answer["findings"]]
        kept, dropped = check_findings(proposed, gathered.files)
        progress.stage = "saving findings"
        await call("ai_save_findings", SaveFindingsInput(data.job, kept), int)
        return ReviewResult(
            findings=kept,
            dropped=dropped,
            ruff_findings=len(lint.findings),
            files=[FileRef(f.path, f.version) for f in gathered.files],
            skipped=gathered.skipped,
            cached=answer.cached,
            model_calls=progress.model_calls,
        )
