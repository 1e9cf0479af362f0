"""The workspace watcher: what it reports, and that links never take it outside a workspace."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from tests.support import wait_until
from vaporform.workspace_watch import watch_workspaces


async def test_links_to_host_folders_are_not_watched(tmp_path: Path) -> None:
    root = tmp_path / "workspaces"
    project = str(uuid.uuid4())
    workspace = root / project
    (workspace / "src").mkdir(parents=True)
    host = tmp_path / "host"
    (host / "deep").mkdir(parents=True)
    # Links made before the watch starts (a worker restart) and after it is in place.
    (workspace / "h").symlink_to(host)
    reports: list[tuple[str, list[str] | None]] = []

    async def report(pid: str, paths: list[str] | None) -> None:
        reports.append((pid, paths))

    stop = asyncio.Event()
    ready = asyncio.Event()
    watcher = asyncio.create_task(watch_workspaces(root, report, stop, ready))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        (workspace / "src" / "late").symlink_to(host)
        (host / "deep" / "outside.txt").write_text("host\n")
        (host / "outside.txt").write_text("host\n")
        (workspace / "new").mkdir()
        (workspace / "new" / "inside.txt").write_text("ours\n")
        (workspace / "src" / "main.py").write_text("print()\n")

        def reported() -> set[str]:
            return {p for pid, paths in reports if pid == project for p in paths or []}

        async def seen() -> bool:
            return {"new/inside.txt", "src/main.py", "src/late"} <= reported()

        await wait_until(seen, timeout=10, what="the changes inside the workspace")
        assert (project, None) in reports  # the full scan once the watch is in place
        assert not any("outside" in p for p in reported()), reported()
    finally:
        stop.set()
        await asyncio.wait_for(watcher, 10)
