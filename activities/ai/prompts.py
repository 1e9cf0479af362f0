"""What the model is told: one system prompt per task and the project context block.

The context block (the files, with line numbers) comes first and is marked for prompt caching,
so the repair call and the feedback rounds of test generation pay for it once.
"""

from __future__ import annotations

import json
from typing import Any

from workflows.ai.contract import SourceFile

PROMPT_VERSION = "2"  # part of the cache key: a changed prompt is a different request

_COMMON = (
    "You are the code assistant of Vaporform, a collaborative web IDE. Ground every statement "
    "in the files you are given. Answer with one JSON object and nothing else: no prose, no "
    "Markdown fences."
)

SYSTEM: dict[str, str] = {
    "review": _COMMON
    + """
Task: review the files. ruff's findings are given; confirm, explain or extend them, and add
what a linter cannot see (logic errors, security, error handling, naming). Only name lines that
exist in the numbered listing.
JSON: {"findings": [{"path": str, "line_start": int, "line_end": int,
"severity": "error"|"warning"|"info", "category": str, "message": str,
"suggestion": str|null}]}""",
    "tests": _COMMON
    + """
Task: write unit tests for the module under test. Tests are plain functions named test_* with
bare assert statements, no fixtures, no network, no files outside /tmp, standard library only
(pytest is not installed). Import the module by the name given. When failures of earlier tests
are given, answer with corrected versions of exactly those tests (same names) or leave them out.
JSON: {"code": str (a complete Python test module), "notes": str}""",
    "debug": _COMMON
    + """
Task: explain the failure shown (command output or error) and fix it. Give the whole new
content of every file you change; change as little as possible.
JSON: {"explanation": str, "changes": [{"path": str, "content": str}]}""",
    "generate": _COMMON
    + """
Task: make the change the user asks for. Give the whole new content of every file you create
or change, with paths relative to the project root.
JSON: {"explanation": str, "changes": [{"path": str, "content": str}]}""",
}


def context_block(files: list[SourceFile]) -> str:
    parts = ["Project files (line numbers are not part of the files):"]
    for item in files:
        parts.append(f"=== {item.path} (version {item.version}) ===")
        lines = item.content.splitlines() or [""]
        width = len(str(len(lines)))
        parts.extend(f"{n:>{width}}| {line}" for n, line in enumerate(lines, 1))
    return "\n".join(parts)


def task_text(task: str, payload: dict[str, Any]) -> str:
    if task == "review":
        lint = payload.get("ruff") or []
        return "ruff findings:\n" + (json.dumps(lint, indent=1) if lint else "none")
    if task == "tests":
        text = (
            f"Module under test: {payload['path']} (import it as `{payload['module']}`).\n"
            f"Existing tests: {', '.join(payload.get('existing_tests') or []) or 'none'}."
        )
        failures = payload.get("failures")
        if failures:
            text += "\nThese tests failed or were flaky; fix or drop them:\n" + json.dumps(
                failures, indent=1
            )
        return text
    if task == "debug":
        text = ""
        if payload.get("command"):
            text += f"Command: {json.dumps(payload['command'])}\n"
            text += f"Exit code: {payload.get('exit_code')}\n"
        if payload.get("error"):
            text += f"Error / output:\n{payload['error']}\n"
        return text or "Find the bug."
    return f"Request:\n{payload.get('prompt', '')}"
