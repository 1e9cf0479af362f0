"""The submit path: one op in, one committed revision (or a stable error) out.

For each op ``(base revision, op, client_key, seq)``: take the ops committed since the base
revision, de-duplicate on ``(client_key, seq)`` (a resubmit is acknowledged with the revision
its first copy became and never applied twice), transform the op past them, and commit it as
the next revision. PostgreSQL decides commit order: ``(document, revision)`` is unique and the
insert answers yes or no; on no, this node reads what it missed and tries again, a bounded
number of times. Only after the commit is the op applied to the cache, acknowledged and
published.

Group commit, twice over: every op waiting for one document when its writer comes round is
transformed as one batch, and the batches of every document ready at that moment on this node
go to the database together (``GroupCommit``): one statement, one transaction, one WAL flush
for all of them, each document still winning or losing its revisions on its own. A batch is
one `collab commit` span, the child of its first op's span and linked to the others'.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import cast
from uuid import UUID

import asyncpg
from opentelemetry import trace
from opentelemetry.context import Context

from collab import ot
from collab.document import LiveDocument
from collab.errors import CollabError
from collab.settings import CollabSettings
from store import collab as store
from store.collab import OpRow
from store.db import Conn
from vaporform import metrics

log = logging.getLogger("vaporform.collab")

Publish = Callable[[LiveDocument, Sequence[OpRow]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Outcome:
    revision: int  # the revision the op became
    op: ot.Op  # the op as committed (transformed)
    duplicate: bool = False


@dataclass(slots=True)
class Submission:
    revision: int
    op: ot.Op
    client_key: str
    seq: int
    user_id: UUID | None
    future: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    span_context: trace.SpanContext | None = None  # the span of the op's message, if traced


def _fail(sub: Submission, error: Exception) -> None:
    if not sub.future.done():
        sub.future.set_exception(error)
        sub.future.exception()  # the submitter may be gone; never "exception not retrieved"


def _succeed(sub: Submission, outcome: Outcome) -> None:
    if not sub.future.done():
        sub.future.set_result(outcome)


def _ot_error(path: str, error: ot.OTError) -> CollabError:
    return CollabError(error.code, str(error), {"path": path})


@dataclass(frozen=True, slots=True)
class _Prepared:
    rows: list[OpRow]  # the ops as they would commit, revisions in order
    accepted: list[Submission]  # their submissions, one per row
    text: str  # the document after them, so that nobody applies them twice
    units: int


@dataclass(slots=True)
class _Batch:
    document_id: int
    rows: Sequence[OpRow]
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

    async def commit(self, document_id: int, rows: Sequence[OpRow]) -> bool:
        """True when every row was written, False when another writer took a revision or a
        resubmit key first (nothing was written); raises when the database failed."""
        batch = _Batch(document_id, rows, asyncio.get_running_loop().create_future())
        self._waiting.append(batch)
        if len(self._writers) < self.settings.commit_groups_in_flight:
            writer = asyncio.get_running_loop().create_task(self._write())
            self._writers.add(writer)
            writer.add_done_callback(self._written)
        return await batch.written

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
                    conn, {b.document_id: b.rows for b in group}
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
                written = await store.insert_ops(conn, batch.document_id, list(batch.rows))
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


class Committer:
    """Serialises one document's submits on this node and commits them in groups."""

    def __init__(
        self,
        doc: LiveDocument,
        pool: asyncpg.Pool,
        settings: CollabSettings,
        publish: Publish,
        *,
        tracer: trace.Tracer | None = None,
        group: GroupCommit | None = None,
    ) -> None:
        self.doc = doc
        self.tracer = tracer or trace.NoOpTracer()
        self.pool = pool
        self.settings = settings
        self.publish = publish
        # The node's group (the hub's), so that every document of the node shares its
        # commits; a Committer of its own (a test's) gets a group of its own.
        self.group = group or GroupCommit(pool, settings)
        self._queue: list[Submission] = []
        self._writer: asyncio.Task[None] | None = None
        self._unpublished: list[OpRow] = []  # committed, not yet handed to the broker
        self._follower: asyncio.Task[None] | None = None

    async def submit(self, sub: Submission) -> Outcome:
        self._queue.append(sub)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._drain())
        # Shielded: a client that disconnects must not cancel an op the batch may commit.
        return await asyncio.shield(sub.future)

    async def _drain(self) -> None:
        while self._queue:
            batch = self._queue[: self.settings.max_batch]
            del self._queue[: len(batch)]
            span = self._span(batch)
            began = time.perf_counter()
            try:
                committed = await self._commit(batch)
            except Exception as exc:
                span.record_exception(exc)
                span.end()
                log.exception("commit failed", extra={"path": self.doc.path})
                for sub in batch:
                    _fail(sub, CollabError("internal_error", f"the op was not committed: {exc}"))
                continue
            span.end()
            metrics.COMMIT_DURATION.observe(time.perf_counter() - began)
            metrics.COMMIT_BATCH.observe(len(batch))
            if committed:
                metrics.OPS_COMMITTED.inc(len(committed))
                self._unpublished.extend(committed)
                if self._follower is None or self._follower.done():
                    self._follower = asyncio.get_running_loop().create_task(self._follow_up())

    async def _follow_up(self) -> None:
        """After commits, off their path: the next batch need not wait for the broker or a
        snapshot. One task per document publishes, in commit order, what was committed since
        its last message (a few batches in one message when the broker is slower than the
        commits), then saves a snapshot when one is due."""
        while self._unpublished:
            rows = self._unpublished[: self.settings.max_batch]
            del self._unpublished[: len(rows)]
            try:
                await self.publish(self.doc, rows)
            except Exception:
                # Committed is what counts: other nodes fill the gap from the database
                # when the next op of this document reaches them.
                log.exception("publishing committed ops failed", extra={"path": self.doc.path})
            await self._snapshot_if_due()

    def _span(self, batch: list[Submission]) -> trace.Span:
        """The batch's commit span (started; the caller ends it). Its parent is never the
        writer task's own context, which is the first submitter's of long ago."""
        traced = [sub.span_context for sub in batch if sub.span_context is not None]
        parent = trace.set_span_in_context(trace.NonRecordingSpan(traced[0])) if traced else None
        return self.tracer.start_span(
            "collab commit",
            context=parent or Context(),
            links=[trace.Link(context) for context in traced[1:]],
            attributes={"vaporform.collab.ops": len(batch)},
        )

    async def _snapshot_if_due(self) -> None:
        doc = self.doc
        if doc.revision - doc.snapshot_revision < self.settings.snapshot_every:
            return
        text, revision = doc.text, doc.revision
        doc.snapshot_revision = revision
        try:
            async with self.pool.acquire() as conn:
                await store.save_snapshot(
                    conn, doc.id, text=text, revision=revision, keep_ops=self.settings.keep_ops
                )
        except Exception:
            log.exception("saving a snapshot failed", extra={"path": doc.path})

    async def _commit(self, batch: list[Submission]) -> list[OpRow]:
        """Optimistic first (in a group, one statement), then under the document's lock.

        Every insert takes the document's advisory lock for its own duration, so a node that
        lost a race can catch up, transform and insert while holding it: then nobody can take
        the revision it is about to write, and it cannot lose again (no starvation between
        nodes). Without contention the lock is free and the commit is one round trip, shared
        with whichever other documents are committing at the time.
        """
        doc, pending = self.doc, batch
        async with doc.lock:
            if max(s.revision for s in pending) > doc.revision:
                # A client may have heard of a revision through another node before the
                # broker brought it here.
                async with self.pool.acquire() as conn:
                    await doc.follow(conn)
            for attempt in range(self.settings.commit_attempts):
                if attempt == 0:
                    prepared = await self._prepare(pending)
                    written = bool(prepared.rows) and await self.group.commit(doc.id, prepared.rows)
                else:
                    prepared, written = await self._commit_locked(pending)
                rows = prepared.rows
                if not rows:
                    return []
                if written:
                    doc.advance(rows, result=(prepared.text, prepared.units))
                    for sub, row in zip(prepared.accepted, rows, strict=True):
                        _succeed(sub, Outcome(row.revision, row.op))
                    return rows
                metrics.COMMIT_CONFLICTS.inc()
                pending = [s for s in prepared.accepted if not s.future.done()]
            for sub in pending:
                _fail(sub, CollabError("busy", "the document is too busy; resubmit the op"))
        return []

    async def _commit_locked(self, pending: list[Submission]) -> tuple[_Prepared, bool]:
        doc = self.doc
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                await store.lock_document(conn, doc.id)
                await doc.follow(conn)
                prepared = await self._prepare(pending)
                rows = prepared.rows
                written = bool(rows) and await store.insert_ops(conn, doc.id, rows)
            if rows and not written:
                # Under the lock only a resubmit key can clash.
                await self._refuse_reused_seqs(conn, prepared.accepted)
        return prepared, written

    async def _prepare(self, batch: list[Submission]) -> _Prepared:
        """Transform each op past everything committed since its base revision."""
        doc = self.doc
        text, revision, units = doc.text, doc.revision, doc.units
        rows: list[OpRow] = []
        accepted: list[Submission] = []
        for sub in batch:
            try:
                concurrent = await doc.ops_after(self.pool, sub.revision) + rows
                first = next(
                    (r for r in concurrent if r.client_key == sub.client_key and r.seq == sub.seq),
                    None,
                )
                if first is not None:
                    _succeed(sub, Outcome(first.revision, first.op, duplicate=True))
                    continue
                op = sub.op
                for row in concurrent:
                    op = ot.transform(op, row.op)[0]
                new_units = ot.target_length(op)
                if new_units > self.settings.max_document_units and new_units > units:
                    raise CollabError(
                        "too_large",
                        f"the document would exceed {self.settings.max_document_units} units",
                        {"path": doc.path},
                    )
                text = ot.apply(text, op)
            except ot.OTError as exc:
                _fail(sub, _ot_error(doc.path, exc))
                continue
            except CollabError as exc:
                _fail(sub, exc)
                continue
            revision += 1
            units = new_units
            rows.append(OpRow(revision, op, sub.client_key, sub.seq, sub.user_id))
            accepted.append(sub)
        return _Prepared(rows, accepted, text, units)

    async def _refuse_reused_seqs(self, conn: Conn, accepted: list[Submission]) -> None:
        """No op was missed, so the insert clashed on a resubmit key committed long ago."""
        taken = await store.find_resubmits(
            conn, self.doc.id, [(s.client_key, s.seq) for s in accepted]
        )
        for sub in accepted:
            if (sub.client_key, sub.seq) in taken:
                _fail(
                    sub,
                    CollabError(
                        "stale_seq",
                        f"seq {sub.seq} already named an op before revision {sub.revision}",
                        {"path": self.doc.path, "seq": sub.seq},
                    ),
                )
