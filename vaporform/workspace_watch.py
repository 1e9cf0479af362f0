"""Watch the workspaces of this machine and report what programs changed in them.

Runs in the worker, beside the Docker engine whose containers write into the workspaces.
Each batch of changes is grouped by project and handed on (to the versioning workflow, which
imports them as versions by the author `container`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

import watchfiles

log = logging.getLogger("vaporform.watch")

# (project id, changed paths); None means "scan the whole workspace".
OnChange = Callable[[str, list[str] | None], Awaitable[None]]


def group_changes(root: Path, changed: set[tuple[watchfiles.Change, str]]) -> dict[str, list[str]]:
    """{project id: [relative paths]} of the changes under `root`, our temp files left out."""
    grouped: dict[str, set[str]] = defaultdict(set)
    for _, raw in changed:
        try:
            relative = Path(raw).relative_to(root)
        except ValueError:
            continue
        if len(relative.parts) < 2 or relative.name.startswith(".vf-tmp-"):
            continue
        try:
            project_id = str(uuid.UUID(relative.parts[0]))
        except ValueError:
            continue
        grouped[project_id].add("/".join(relative.parts[1:]))
    return {pid: sorted(paths) for pid, paths in grouped.items()}


async def _report(on_change: OnChange, project_id: str, paths: list[str] | None) -> None:
    try:
        await on_change(project_id, paths)
    except Exception:  # keep watching; the next change or the next full scan catches up
        log.exception("could not report workspace changes", extra={"project": project_id})


async def watch_workspaces(
    root: Path, on_change: OnChange, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    """Report changes until `stop` is set; `ready` is set once the watch is in place.

    Changes made while nothing watched (the worker was down) are caught by one full scan of
    every workspace as soon as the watch is in place.
    """
    root.mkdir(parents=True, exist_ok=True)
    started = False
    # yield_on_timeout: an empty batch after rust_timeout proves the watch is set up.
    async for changed in watchfiles.awatch(
        root, stop_event=stop, debounce=300, step=50, rust_timeout=200, yield_on_timeout=True
    ):
        if not started:
            started = True
            if ready is not None:
                ready.set()
            for folder in await asyncio.to_thread(lambda: sorted(root.iterdir())):
                if folder.is_dir() and _is_uuid(folder.name):
                    await _report(on_change, folder.name, None)
        for project_id, paths in group_changes(root, changed).items():
            await _report(on_change, project_id, paths)


def _is_uuid(name: str) -> bool:
    try:
        return str(uuid.UUID(name)) == name
    except ValueError:
        return False
