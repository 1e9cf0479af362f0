"""A live document on one API node: its text at the latest revision this node knows.

The op log in PostgreSQL is the truth; this is a cache of its tail that moves forward only
in revision order, whether an op was committed here (collab/submit.py), arrived from another
node over the broker, or was read back from the database to fill a gap. Each new revision is
handed to the listeners (the sessions that joined the document) in that same order.

A node can fall further behind than the op log keeps (it missed the broker while another node
committed and snapshotted): then the gap cannot be filled op by op, and the cache jumps to the
latest snapshot plus the ops after it; the jump listeners tell their clients to re-join.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from collab import ot
from collab.errors import CollabError
from collab.history import History
from store import collab as store
from store.collab import Document, OpRow
from store.db import Conn

log = logging.getLogger("vaporform.collab")

Listener = Callable[["LiveDocument", Sequence[OpRow]], None]
JumpListener = Callable[["LiveDocument"], None]


def resync(path: str, why: str) -> CollabError:
    return CollabError("resync", f"re-join {path}: {why}", {"path": path})


class LiveDocument:
    def __init__(
        self,
        *,
        document_id: int,
        project_id: UUID,
        path: str,
        text: str,
        revision: int,
        history: Sequence[OpRow],
        history_limit: int,
    ) -> None:
        self.id = document_id
        self.project_id = project_id
        self.path = path
        self.text = text
        self.units = ot.utf16_len(text)
        self.revision = revision
        self.history = History(history_limit)
        self.history.extend(history, time.monotonic())
        self.listeners: set[Listener] = set()
        self.jump_listeners: set[JumpListener] = set()
        # Held while committing or catching up, so the cache moves forward one step at a time.
        self.lock = asyncio.Lock()
        self.checkpoint_lock = asyncio.Lock()
        self.last_change = time.monotonic()
        self.checkpointed_revision = 0
        self.snapshot_revision = 0
        self.last_author: UUID | None = None
        self.editors = 0  # local sessions that may edit, for "last editor leaves"
        self._catching_up: asyncio.Task[None] | None = None
        self.waiting = 0  # catch-ups waiting for `lock`: a committer holding it lets them in
        # Who waits for a revision committed on another node (collab/forward.py).
        self._reaching: list[tuple[int, asyncio.Future[None]]] = []

    # -- reading the cache ---------------------------------------------------------------

    def cached_after(self, revision: int) -> list[OpRow] | None:
        """Ops after `revision` from memory; None when memory does not reach back that far."""
        if revision == self.revision:
            return []
        first = self.history.first_revision
        if first is None or first > revision + 1:
            return None
        return self.history.newest(self.revision - revision)

    async def ops_after(self, pool: asyncpg.Pool, revision: int) -> list[OpRow]:
        if revision > self.revision or revision < 0:
            raise CollabError(
                "invalid_revision",
                f"revision {revision} is not between 0 and {self.revision}",
                {"path": self.path, "revision": self.revision},
            )
        cached = self.cached_after(revision)
        if cached is not None:
            return cached
        async with pool.acquire() as conn:
            rows = await store.ops_since(conn, self.id, revision)
        rows = [r for r in rows if r.revision <= self.revision]
        if len(rows) != self.revision - revision:
            raise resync(self.path, f"revision {revision} is older than the retained history")
        return rows

    # -- moving forward ------------------------------------------------------------------

    def advance(self, rows: Sequence[OpRow], *, result: tuple[str, int] | None = None) -> None:
        """Apply consecutive committed ops that follow the current revision.

        `result` is the text and UTF-16 length after all of `rows`, when the committer has
        already computed them from this revision: then the ops are not applied again.
        """
        fresh = [r for r in rows if r.revision > self.revision]
        if not fresh:
            return
        if fresh[0].revision != self.revision + 1:
            raise RuntimeError(f"gap: at {self.revision}, got {fresh[0].revision}")
        now = time.monotonic()
        if result is not None and len(fresh) == len(rows):
            self.text, self.units = result
        else:
            text = self.text
            for row in fresh:
                text = ot.apply(text, row.op)
            self.text, self.units = text, ot.utf16_len(text)
        self.revision = fresh[-1].revision
        self.history.extend(fresh, now)
        self.last_change = now
        for listener in list(self.listeners):
            try:
                listener(self, fresh)
            except Exception:
                log.exception("listener failed", extra={"path": self.path})
        if self._reaching:
            self._reached()

    async def reach(self, revision: int, pool: asyncpg.Pool, wait_s: float = 1.0) -> None:
        """Return once this copy holds `revision`, committed on another node: from the
        broker as usual, or read from the database when the broker is slower than `wait_s`."""
        if self.revision >= revision:
            return
        reached = asyncio.get_running_loop().create_future()
        self._reaching.append((revision, reached))
        try:
            await asyncio.wait_for(reached, wait_s)
        except TimeoutError:
            await self.catch_up(pool)
        finally:
            self._reaching = [(r, f) for r, f in self._reaching if f is not reached]

    def _reached(self) -> None:
        for revision, reached in self._reaching:
            if revision <= self.revision and not reached.done():
                reached.set_result(None)

    def receive(self, row: OpRow, pool: asyncpg.Pool) -> None:
        """An op committed elsewhere, from the broker (possibly out of reach: then catch up)."""
        if row.revision <= self.revision:
            return
        if row.revision == self.revision + 1 and not self.lock.locked():
            self.advance([row])
        else:
            self.catch_up_soon(pool)

    def catch_up_soon(self, pool: asyncpg.Pool) -> None:
        if self._catching_up is None or self._catching_up.done():
            self._catching_up = asyncio.get_running_loop().create_task(self.catch_up(pool))

    async def catch_up(self, pool: asyncpg.Pool) -> None:
        self.waiting += 1
        try:
            await self.lock.acquire()
        finally:
            self.waiting -= 1
        try:
            async with pool.acquire() as conn:
                await self.follow(conn)
        finally:
            self.lock.release()

    async def follow(self, conn: Conn) -> None:
        """Move to the latest committed revision (the caller holds `lock`): op by op when the
        log still has every op since this cache's revision, else by a jump."""
        rows = await store.ops_since(conn, self.id, self.revision)
        if rows and rows[0].revision > self.revision + 1:
            await self._jump(conn)
        else:
            self.advance(rows)

    async def _jump(self, conn: Conn) -> None:
        latest = await _latest(conn, self.id)
        log.warning(
            "document fell behind the op log; reloaded from its snapshot",
            extra={"path": self.path, "from": self.revision, "to": latest.revision},
        )
        self.text, self.units = latest.text, ot.utf16_len(latest.text)
        self.revision = latest.revision
        # Memory must hold consecutive revisions only: what came before the jump is gone.
        self.history.clear()
        self.history.extend(latest.rows, time.monotonic())
        row = latest.row
        self.snapshot_revision = max(self.snapshot_revision, row.snapshot_revision)
        self.checkpointed_revision = max(self.checkpointed_revision, row.checkpoint_revision)
        self.last_change = time.monotonic()
        for listener in list(self.jump_listeners):
            try:
                listener(self)
            except Exception:
                log.exception("jump listener failed", extra={"path": self.path})
        if self._reaching:
            self._reached()

    # -- cursors -------------------------------------------------------------------------

    def transform_position(self, revision: int, position: int) -> int:
        """A position in the text at `revision`, moved to the current revision."""
        ops = self.cached_after(revision)
        if ops is None:
            raise resync(self.path, f"revision {revision} is too old for a cursor")
        if not ops and position > self.units:
            raise CollabError(
                "invalid_position",
                f"position {position} is beyond the end ({self.units})",
                {"path": self.path},
            )
        try:
            for row in ops:
                position = ot.transform_position(position, row.op)
        except ot.OTError as exc:
            raise CollabError(exc.code, str(exc), {"path": self.path}) from None
        return position


@dataclass(frozen=True)
class _Latest:
    """A document's row, the ops after its snapshot and the text they make."""

    row: Document
    rows: list[OpRow]
    text: str

    @property
    def revision(self) -> int:
        return self.rows[-1].revision if self.rows else self.row.snapshot_revision


async def _latest(conn: Conn, document_id: int) -> _Latest:
    """The document at its latest committed revision.

    Read again (three times at most) when a snapshot was saved, and ops pruned, between the
    two reads of a read-committed caller: that leaves a gap the next read no longer sees.
    """
    for _ in range(3):
        row = await store.document_by_id(conn, document_id)
        if row is None:
            raise CollabError("not_found", "the document was deleted")
        rows = await store.ops_since(conn, row.id, row.snapshot_revision)
        if not rows or rows[0].revision == row.snapshot_revision + 1:
            text = row.snapshot
            for op_row in rows:
                text = ot.apply(text, op_row.op)
            return _Latest(row, rows, text)
    raise RuntimeError(f"document {document_id}: its snapshot kept moving while read")


async def load(pool: asyncpg.Pool, document: store.Document, *, history_limit: int) -> LiveDocument:
    """The document at its latest committed revision: the snapshot plus the ops after it."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        latest = await _latest(conn, document.id)
    row = latest.row
    doc = LiveDocument(
        document_id=row.id,
        project_id=row.project_id,
        path=row.path,
        text=latest.text,
        revision=latest.revision,
        history=latest.rows,
        history_limit=history_limit,
    )
    doc.checkpointed_revision = row.checkpoint_revision
    doc.snapshot_revision = row.snapshot_revision
    return doc
