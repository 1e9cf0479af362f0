"""Group commit: the batches of every document ready at one moment on this node go to the
database together, one statement, one transaction and one WAL flush for all of them, each
document still winning or losing its revisions on its own (store/collab.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import asyncpg

from collab.settings import CollabSettings
from store import collab as store
from store.collab import OpRow

log = logging.getLogger("vaporform.collab")


@dataclass(slots=True)
class _Batch:
    document_id: int
    rows: Sequence[OpRow]
    token: int  # the head's token once these rows are in
    after: int | None  # the token the head must hold first, or None: any head at rows[0] - 1
    written: asyncio.Future[bool]


class GroupCommit:
    """The commits of many documents on one node, in as few transactions as possible.

    A document's batch waits here while earlier groups are in flight; each group that leaves
    takes every batch waiting (one per document, up to `max_group_ops` rows). An idle node
    sends a batch at once; a busy one sends fewer, larger transactions.
    """

    def __init__(self, pool: asyncpg.Pool, settings: CollabSettings) -> None:
        self.pool = pool
        self.settings = settings
        self._waiting: list[_Batch] = []
        self._writers: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()  # cached: see Committer.__init__

    def send(
        self, document_id: int, rows: Sequence[OpRow], *, token: int, after: int | None = None
    ) -> asyncio.Future[bool]:
        """Queue `rows` for the next group. The future answers True when every row was
        written, False when the head had moved or a resubmit key was taken (nothing was
        written), and raises when the database failed. With `after`, they are written only
        once, and if, the commit whose token that is has been."""
        loop = self._loop
        batch = _Batch(document_id, rows, token, after, loop.create_future())
        self._waiting.append(batch)
        if len(self._writers) < self.settings.commit_groups_in_flight:
            writer = loop.create_task(self._write())
            self._writers.add(writer)
            writer.add_done_callback(self._written)
        return batch.written

    async def _write(self) -> None:
        try:
            while self._waiting:
                group = self._take()
                try:
                    await self._send(group)
                except BaseException as exc:
                    # Cancelled (the node is stopping) or a bug: the submitters hear of it;
                    # what was committed meanwhile their resubmits find.
                    failure = exc if isinstance(exc, Exception) else RuntimeError("interrupted")
                    for batch in group:
                        _settle(batch, failure)
                    raise
        finally:
            # Here, not in a done callback: a batch queued in between would find no writer.
            self._writers.discard(cast("asyncio.Task[None]", asyncio.current_task()))

    @staticmethod
    def _written(writer: asyncio.Task[None]) -> None:
        if not writer.cancelled() and writer.exception() is not None:
            log.error("a group commit writer failed", exc_info=writer.exception())

    def _take(self) -> list[_Batch]:
        """The next group: the oldest batch of each document waiting, within the op limit."""
        group: dict[int, _Batch] = {}
        left: list[_Batch] = []
        ops = 0
        for batch in self._waiting:
            if batch.written.done():
                continue  # its submitter was cancelled
            fits = not group or ops + len(batch.rows) <= self.settings.max_group_ops
            if fits and batch.document_id not in group:
                group[batch.document_id] = batch
                ops += len(batch.rows)
            else:
                left.append(batch)
        self._waiting = left
        return list(group.values())

    async def _send(self, group: list[_Batch]) -> None:
        if not group:
            return
        try:
            async with self.pool.acquire() as conn:
                written = await store.insert_ops_of_documents(
                    conn,
                    {b.document_id: b.rows for b in group},
                    tokens={b.document_id: b.token for b in group},
                    after={b.document_id: b.after for b in group if b.after is not None},
                )
        except Exception:
            # One document's failure (or an unlucky clash) must not fail the others: each
            # goes again alone, and only a document that fails alone fails.
            log.warning("a group commit failed; committing its documents one by one", exc_info=True)
            await asyncio.gather(*(self._send_alone(b) for b in group))
            return
        for batch in group:
            _settle(batch, batch.document_id in written)

    async def _send_alone(self, batch: _Batch) -> None:
        try:
            async with self.pool.acquire() as conn:
                written = await store.insert_ops(
                    conn, batch.document_id, batch.rows, token=batch.token, after=batch.after
                )
        except Exception as exc:
            _settle(batch, exc)
            return
        _settle(batch, written)


def _settle(batch: _Batch, outcome: bool | Exception) -> None:
    if batch.written.done():
        return
    if isinstance(outcome, Exception):
        batch.written.set_exception(outcome)
        batch.written.exception()  # the submitter may be gone; never "exception not retrieved"
    else:
        batch.written.set_result(outcome)
