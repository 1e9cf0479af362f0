"""What the jobs that propose file changes share: asking for changes and checking them."""

from __future__ import annotations

from typing import Any

from workflows.ai.contract import (
    AIProgress,
    FileRef,
    JobRef,
    Proposal,
    ProposedFile,
    ProposeInput,
    ProposeOutput,
    SourceFile,
)
from workflows.shared import call

OUTPUT_TAIL = 12_000  # characters of command output shown to the model


async def propose(
    progress: AIProgress, job: JobRef, files: list[SourceFile], answer: dict[str, Any]
) -> Proposal:
    progress.stage = "preparing changes"
    proposed = await call(
        "ai_propose",
        ProposeInput(
            job.project_id,
            [ProposedFile(c["path"], c["content"]) for c in answer.get("changes", [])],
        ),
        ProposeOutput,
    )
    return Proposal(
        explanation=answer.get("explanation", ""),
        changes=proposed.changes,
        refused=proposed.refused,
        files=[FileRef(f.path, f.version) for f in files],
        model_calls=progress.model_calls,
    )
