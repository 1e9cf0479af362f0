"""Review findings checked against the files they name: pure, so the workflow runs it."""

from __future__ import annotations

from typing import Any

from workflows.ai.contract import DroppedFinding, FindingData, SourceFile


def check_findings(
    findings: list[FindingData], files: list[SourceFile]
) -> tuple[list[FindingData], list[DroppedFinding]]:
    """Findings whose lines exist in the file they name, and the others with the reason.

    Pure, so the workflow can run it: a model that invents a line is caught before anyone
    sees the finding.
    """
    lines = {f.path: max(1, len(f.content.splitlines())) for f in files}
    versions = {f.path: f.version for f in files}
    kept: list[FindingData] = []
    dropped: list[DroppedFinding] = []
    for item in findings:
        count = lines.get(item.path)
        reason = None
        if count is None:
            reason = "the file was not part of the review"
        elif not 1 <= item.line_start <= item.line_end <= count:
            reason = f"lines {item.line_start}-{item.line_end} do not exist ({count} lines)"
        elif item.severity not in ("error", "warning", "info"):
            reason = f"unknown severity {item.severity!r}"
        if reason is None:
            kept.append(
                FindingData(
                    path=item.path,
                    line_start=item.line_start,
                    line_end=item.line_end,
                    severity=item.severity,
                    category=item.category,
                    message=item.message,
                    suggestion=item.suggestion,
                    source=item.source,
                    file_version=versions[item.path],
                )
            )
        else:
            dropped.append(DroppedFinding(finding_public(item), reason))
    return kept, dropped


def finding_public(item: FindingData) -> dict[str, Any]:
    return {
        "path": item.path,
        "line_start": item.line_start,
        "line_end": item.line_end,
        "severity": item.severity,
        "category": item.category,
        "message": item.message,
        "suggestion": item.suggestion,
        "source": item.source,
    }
