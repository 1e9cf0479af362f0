"""Hands file changes to the versioning workflows without making writers wait for Temporal.

A write answers as soon as its version is committed and mirrored; the "files changed" signal
is sent from a background task that coalesces changes per project, so a burst of 50 saves to
one project costs one signal, not 50 round trips on the request path. The follow-up work is
derived (stats, announcements, imports), so a signal lost to a crash costs freshness, not data:
the next change of the project, or the worker's full scan at start, catches up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from files.model import ChangeEvent

log = logging.getLogger("vaporform.files")

Send = Callable[[str, list[str], str], Awaitable[None]]


class Announcer:
    def __init__(self, send: Send) -> None:
        self._send = send
        self._pending: dict[tuple[str, str], set[str]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def __call__(self, event: ChangeEvent) -> None:
        self._pending.setdefault((str(event.project_id), event.origin), set()).update(event.paths)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Send what is pending, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, {}
            if batch:
                await asyncio.gather(
                    *(
                        self._deliver(pid, sorted(paths), origin)
                        for (pid, origin), paths in batch.items()
                    )
                )
            if self._closing and not self._pending:
                return

    async def _deliver(self, project_id: str, paths: list[str], origin: str) -> None:
        try:
            await self._send(project_id, paths, origin)
        except Exception:
            log.exception("could not signal file changes", extra={"project": project_id})
