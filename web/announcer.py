"""Hands file changes to the versioning workflows without making writers wait for Temporal.

A write answers as soon as its version is committed and mirrored; the "files changed" signal
is sent from a background task that coalesces changes per project, so a burst of 50 saves to
one project costs one signal, not 50 round trips on the request path. The follow-up work is
derived (stats, announcements, imports), so a signal lost to a crash costs freshness, not data:
the next change of the project, or the worker's full scan at start, catches up.

A project is signalled at most once per `interval`. Live documents become file versions all
the time while people type (every busy file every few seconds), and each signal is a workflow
task for the Temporal server and the worker, however short: at 50 files x 4 writers a signal
every ~140 ms cost the two of them a fifth of a core on a 2-core box (209 signals, 170
workflow tasks and 162 timers for 8 activities in 29 s), all taken from the API and the
database. The workflow waits for its own quiet period anyway (workflows/files/contract.py
DEBOUNCE), so a change that waits here for the rest of the interval is seen about as soon.
The first change after a quiet interval goes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable

from files.model import ChangeEvent

log = logging.getLogger("vaporform.files")

Send = Callable[[str, list[str], str], Awaitable[None]]

# Seconds between two signals of one project.
SIGNAL_INTERVAL_S = 1.0


class Announcer:
    def __init__(self, send: Send, *, interval: float = SIGNAL_INTERVAL_S) -> None:
        self._send = send
        self._interval = interval
        self._pending: dict[tuple[str, str], set[str]] = {}
        self._signalled: dict[str, float] = {}  # project -> loop time of its last signal
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
        loop = asyncio.get_running_loop()
        while True:
            wait = self._until_due(loop.time())
            if wait > 0:
                # A change of a project that is due wakes this at once; the others wait.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), None if wait == math.inf else wait)
            self._wake.clear()
            now = loop.time()
            due = {key: paths for key, paths in self._pending.items() if self._is_due(key[0], now)}
            for key in due:
                del self._pending[key]
            for project_id, _ in due:
                self._signalled[project_id] = now
            self._forget(now)
            if due:
                await asyncio.gather(
                    *(
                        self._deliver(pid, sorted(paths), origin)
                        for (pid, origin), paths in due.items()
                    )
                )
            if self._closing and not self._pending:
                return

    def _is_due(self, project_id: str, now: float) -> bool:
        last = self._signalled.get(project_id)
        return self._closing or last is None or now - last >= self._interval

    def _until_due(self, now: float) -> float:
        """Seconds until the first pending project may be signalled (inf: nothing pending)."""
        if self._closing:
            return 0.0
        soonest = math.inf
        for project_id, _ in self._pending:
            last = self._signalled.get(project_id)
            soonest = min(soonest, 0.0 if last is None else last + self._interval - now)
        return max(soonest, 0.0)

    def _forget(self, now: float) -> None:
        """Drop the signal times that no longer hold anything back (one entry per project
        signalled within the interval, not one per project ever signalled)."""
        for project_id in [p for p, t in self._signalled.items() if now - t >= self._interval]:
            del self._signalled[project_id]

    async def _deliver(self, project_id: str, paths: list[str], origin: str) -> None:
        try:
            await self._send(project_id, paths, origin)
        except Exception:
            log.exception("could not signal file changes", extra={"project": project_id})
