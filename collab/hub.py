"""Live collaboration in one API process: the project rooms of this node, and their timers.

The ``Hub`` is built when serving starts (web/app.py) and closed when it stops, after it has
checkpointed what is unsaved. It holds a ``Room`` (collab/room.py) per project with someone
connected, ticks them (heartbeats, presence expiry, checkpoints), keeps quiet connections
alive (collab/fanout.py), and owns the background tasks they spawn, the broker and the
process's fan-out of outgoing frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import Coroutine
from typing import Any
from uuid import UUID

import asyncpg
from opentelemetry import trace

from collab.broker import Broker
from collab.fanout import Fanout
from collab.files import DocumentFiles
from collab.forward import Forwarder
from collab.group import GroupCommit
from collab.room import Room
from collab.settings import CollabSettings
from files.model import ChangeEvent
from vaporform import metrics

log = logging.getLogger("vaporform.collab")

TICK_S = 0.25
SCAN_EVERY_TICKS = 4


class Hub:
    def __init__(
        self,
        pool: asyncpg.Pool,
        broker: Broker,
        files: DocumentFiles,
        settings: CollabSettings | None = None,
        *,
        node_id: str | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.pool = pool
        # Spans of the submit path (collab/session.py, collab/submit.py); none by default.
        self.tracer = tracer or trace.NoOpTracer()
        self.broker = broker
        self.files = files
        self.settings = settings or CollabSettings()
        self.node_id = node_id or uuid.uuid4().hex[:12]
        # Every connection's outgoing frames, flushed together (collab/fanout.py).
        self.fanout = Fanout(self.settings.fanout_tick_s)
        # Every document's commits on this node, in as few transactions as possible.
        self.group_commit = GroupCommit(pool, self.settings)
        # Ops of documents another node owns go there to be committed.
        self.forwarder = Forwarder(self)
        # Checkpoints (file versions) saving at once; the others wait their turn.
        self.checkpoint_slots = asyncio.Semaphore(self.settings.checkpoints_in_flight)
        self.checkpoints_queued = 0
        self.rooms: dict[UUID, Room] = {}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._queued = 0  # what this hub last added to the fan-out depth gauge

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("collab task failed", exc_info=task.exception())

    async def enter(self, project_id: UUID) -> Room:
        async with self._lock:
            if self._ticker is None:
                await self.forwarder.start()
                self._ticker = asyncio.get_running_loop().create_task(self._tick())
            room = self.rooms.get(project_id)
            if room is None:
                room = Room(self, project_id)
                await room.start()
                self.rooms[project_id] = room
            room.refs += 1
            return room

    async def exit(self, room: Room) -> None:
        async with self._lock:
            room.refs -= 1
            if room.refs == 0 and not room.documents:
                await room.stop()
                self.rooms.pop(room.project_id, None)

    async def _tick(self) -> None:
        for ticks in itertools.count(1):
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            for room in list(self.rooms.values()):
                try:
                    room.tick(now)
                except Exception:
                    log.exception("collab tick failed")
            # Every connection's outbox once a second, not every tick (2% of the API's time
            # with 1,000 connections): keep-alives are due after seconds, the depth is a gauge.
            if ticks % SCAN_EVERY_TICKS == 0:
                self.fanout.keep_alive(self.settings.keepalive_s)
                self._report_queued(self.fanout.depth())

    def _report_queued(self, queued: int) -> None:
        # By difference: several hubs (tests) or processes add up in one gauge.
        metrics.FANOUT_DEPTH.inc(queued - self._queued)
        self._queued = queued

    async def files_changed(self, event: ChangeEvent) -> None:
        """File system notifier on this node: the fast path for writes made here (other
        nodes hear of them from the versioning workflow on the files channel)."""
        room = self.rooms.get(event.project_id)
        if room is not None:
            for path in event.paths:
                room.file_changed(path)

    async def close(self) -> None:
        """Checkpoint what is unsaved, then stop (serving is ending)."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for room in list(self.rooms.values()):
            for opened in list(room.documents.values()):
                if opened.dirty():
                    opened.save_soon("server shutting down")
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=10)
        for room in list(self.rooms.values()):
            await room.stop()
        self.rooms.clear()
        self.fanout.cancel()
        self._report_queued(0)
        await self.forwarder.stop()
        await self.broker.close()
