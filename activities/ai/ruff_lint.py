"""ruff over a job's Python files: the ground truth a review starts from.

The files are written to a private temporary directory and checked there (ruff only parses;
nothing of the project runs on the worker).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

from workflows.ai.contract import FindingData, SourceFile

# pyflakes (F), pycodestyle errors (E, W), bugbear (B): what a reviewer would flag too. Long
# lines are a matter of the project's style, not a finding.
RULES = "E,F,W,B"
IGNORED = "E501"
# Real problems are errors; the rest are warnings.
ERROR_CODES = ("F821", "F822", "F823", "F811", "F632", "F7", "E9", "B006", "B008")


def ruff_binary() -> str:
    try:
        from ruff.__main__ import find_ruff_bin  # type: ignore[import-untyped]

        return str(find_ruff_bin())
    except (ImportError, FileNotFoundError):
        candidate = Path(sys.executable).with_name("ruff")
        return str(candidate) if candidate.exists() else "ruff"


def _severity(code: str) -> str:
    return "error" if code.startswith(ERROR_CODES) else "warning"


async def ruff_findings(files: list[SourceFile]) -> list[FindingData]:
    python = [f for f in files if f.path.endswith((".py", ".pyi"))]
    if not python:
        return []
    versions = {f.path: f.version for f in python}
    with tempfile.TemporaryDirectory(prefix="vaporform-ruff-") as tmp:
        root = Path(tmp)
        for item in python:
            target = root / item.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(item.content)
        proc = await asyncio.create_subprocess_exec(
            ruff_binary(),
            "check",
            "--isolated",
            "--no-cache",
            "--exit-zero",
            "--output-format",
            "json",
            "--select",
            RULES,
            "--ignore",
            IGNORED,
            ".",
            cwd=root,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"ruff failed ({proc.returncode}): {err.decode()[-2000:]}")
        resolved = os.path.realpath(root)
    findings: list[FindingData] = []
    for item in json.loads(out or b"[]"):
        path = os.path.relpath(os.path.realpath(item["filename"]), resolved).replace(os.sep, "/")
        if path not in versions:
            continue
        start = int(item["location"]["row"])
        end = max(start, int((item.get("end_location") or {}).get("row") or start))
        fix = item.get("fix") or {}
        code = str(item.get("code") or "ruff")
        findings.append(
            FindingData(
                path=path,
                line_start=start,
                line_end=end,
                severity=_severity(code),
                category=f"ruff {code}",
                message=str(item["message"]),
                suggestion=fix.get("message"),
                source="ruff",
                file_version=versions[path],
            )
        )
    findings.sort(key=lambda f: (f.path, f.line_start, f.category))
    return findings
