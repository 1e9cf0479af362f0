"""What a job works on: the project's files within a token budget, ruff's findings on them,
and proposed files turned into changes against the versions they were made for."""

from __future__ import annotations

import difflib
import re
from uuid import UUID

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.ai.ruff_lint import ruff_findings
from files.errors import FileSystemError, checked_path
from files.service import FileSystem
from workflows.ai.contract import (
    Change,
    GatherInput,
    GatherOutput,
    LintInput,
    LintOutput,
    ProposeInput,
    ProposeOutput,
    SourceFile,
)
from workflows.ai.errors import NO_FILES

TRACEBACK_FILE = re.compile(r'File "([^"]+)", line \d+')
TEST_FILE = re.compile(r"(^|/)(test_[^/]*\.py|[^/]*_test\.py)$")


def tokens_of(text: str) -> int:
    """A cheap estimate (4 characters a token): the budget only needs to be roughly right."""
    return len(text) // 4 + 1


class ContextActivities:
    def __init__(self, fs: FileSystem) -> None:
        self._fs = fs

    @activity.defn(name="ai_gather")
    async def gather(self, data: GatherInput) -> GatherOutput:
        project_id = UUID(data.project_id)
        rows = await self._fs.listing(project_id)
        known = {row.path: row for row in rows}
        tests = sorted(p for p in known if TEST_FILE.search(p))
        wanted: list[str] = []
        skipped: list[str] = []
        if data.paths is not None:
            for raw in data.paths:
                try:
                    path = checked_path(raw)
                except FileSystemError:
                    skipped.append(str(raw))
                    continue
                (wanted if path in known else skipped).append(path)
        if data.mentioned_in:
            for raw in TRACEBACK_FILE.findall(data.mentioned_in):
                path = raw.removeprefix("/workspace/").removeprefix("./")
                if path in known and path not in wanted:
                    wanted.append(path)
        if data.paths is None and not data.mentioned_in:
            wanted = [r.path for r in sorted(rows, key=lambda r: (r.size, r.path))]
        files: list[SourceFile] = []
        spent = 0
        for path in wanted:
            found = await self._fs.read(project_id, path)
            if found is None or found.text is None:
                skipped.append(path)
                continue
            cost = tokens_of(found.text) + tokens_of(path) + 8
            if spent + cost > data.token_budget:
                skipped.append(path)
                continue
            spent += cost
            files.append(SourceFile(path, found.version, found.text))
        if not files and (data.paths or (data.paths is None and not data.mentioned_in)):
            raise ApplicationError(
                "no readable text file to work on"
                + (f" (skipped: {', '.join(skipped[:20])})" if skipped else ""),
                type=NO_FILES,
                non_retryable=True,
            )
        return GatherOutput(files=files, skipped=skipped, tests=tests)

    @activity.defn(name="ai_lint")
    async def lint(self, data: LintInput) -> LintOutput:
        return LintOutput(findings=await ruff_findings(data.files))

    @activity.defn(name="ai_propose")
    async def propose(self, data: ProposeInput) -> ProposeOutput:
        """Proposed files as changes against the versions they were made for, with diffs."""
        project_id = UUID(data.project_id)
        changes: list[Change] = []
        refused: dict[str, str] = {}
        for item in data.files:
            try:
                path = checked_path(item.path)
            except FileSystemError as exc:
                refused[item.path] = exc.message
                continue
            current = await self._fs.read(project_id, path)
            if current is not None and current.text is None:
                refused[path] = "a binary file cannot be changed by a text answer"
                continue
            before = "" if current is None else current.text or ""
            if before == item.content:
                continue
            diff = "".join(
                difflib.unified_diff(
                    before.splitlines(keepends=True),
                    item.content.splitlines(keepends=True),
                    fromfile="/dev/null" if current is None else f"a/{path}",
                    tofile=f"b/{path}",
                )
            )
            changes.append(
                Change(path, 0 if current is None else current.version, item.content, diff)
            )
        return ProposeOutput(changes=changes, refused=refused)
