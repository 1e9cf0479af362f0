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

And pipelined: a document's next batch does not wait for the one before it to come back. It
is prepared on the text that one leaves and sent naming its token, so that the database writes
it only after, and only if, that one was written (store/collab.py). One document's commits
are serial in the database either way; what overlaps is the round trip and this node's work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg
from opentelemetry import trace

from collab import instruments, ot
from collab.document import LiveDocument
from collab.errors import CollabError
from collab.group import GroupCommit
from collab.settings import CollabSettings
from collab.submission import Outcome, Submission, commit_span, fail, succeed
from store import collab as store
from store.collab import OpRow
from store.db import Conn
from vaporform import metrics

log = logging.getLogger("vaporform.collab")

Publish = Callable[[LiveDocument, Sequence[OpRow]], Awaitable[None]]


def _ot_error(path: str, error: ot.OTError) -> CollabError:
    return CollabError(error.code, str(error), {"path": path})


@dataclass(frozen=True, slots=True)
class _Flight:
    """A batch handed to the group commit, not yet answered."""

    batch: list[Submission]
    prepared: _Prepared
    token: int  # the head's token once it is written
    written: asyncio.Future[bool]
    ahead: bool  # sent while the one before it was in flight
    span: trace.Span
    began: float


@dataclass(frozen=True, slots=True)
class _Prepared:
    rows: list[OpRow]  # the ops as they would commit, revisions in order
    accepted: list[Submission]  # their submissions, one per row
    text: str  # the document after them, so that nobody applies them twice
    units: int
    chain: list[OpRow]  # these rows and those of the flights before them, uncommitted


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
        # Made on the loop it serves; asyncio.get_running_loop() is a getpid() system call
        # on every call (CPython 3.11), and submit and each pass of _chain would pay it.
        self._loop = asyncio.get_running_loop()
        self._queue: list[Submission] = []
        self._writer: asyncio.Task[None] | None = None
        self._unpublished: list[OpRow] = []  # committed, not yet handed to the broker
        self._held: list[Submission] = []  # resubmits of ops in flight (see _prepare)
        self._arrived: asyncio.Future[None] | None = None  # set by the next submit
        self._follower: asyncio.Task[None] | None = None

    async def submit(self, sub: Submission) -> Outcome:
        self._queue.append(sub)
        if self._arrived is not None and not self._arrived.done():
            self._arrived.set_result(None)
        if self._writer is None or self._writer.done():
            self._writer = self._loop.create_task(self._drain())
        # Shielded: a client that disconnects must not cancel an op the batch may commit.
        return await asyncio.shield(sub.future)

    async def _drain(self) -> None:
        while self._queue:
            async with self.doc.lock:
                await self._chain()

    async def _chain(self) -> None:
        """Commit what is queued, holding the document, with up to `commits_ahead` batches
        sent while the one before them is in flight (see the module's docstring). Ends,
        its flights landed, when the queue is empty or someone waits to catch up."""
        flights: deque[_Flight] = deque()
        sent = False
        while True:
            while self._queue and len(flights) <= self.settings.commits_ahead:
                if flights and not self._may_send_after(flights[-1]):
                    break
                if not flights and sent and self.doc.waiting:
                    return  # the one waiting goes first (the lock is fair)
                flight = await self._send(self._take(), flights[-1] if flights else None)
                sent = True
                if flight is not None:
                    flights.append(flight)
            if not flights:
                if not self._held:
                    return
                self._queue[:0], self._held = self._held, []
                continue
            if len(flights) <= self.settings.commits_ahead and await self._arrives_first(flights):
                continue
            flight = flights.popleft()
            landed = await self._land(flight)
            if landed is not True:
                # What was sent after it can no longer be written; it goes again, in order
                # behind the flight itself when that was refused for going ahead.
                await self._recall(flights if landed is False else [flight, *flights])
                flights.clear()

    async def _arrives_first(self, flights: deque[_Flight]) -> bool:
        """Wait for the oldest flight's answer or the next submission, whichever comes
        first; True for the submission, which may go ahead."""
        written = flights[0].written
        arrived = self._arrived = self._loop.create_future()

        def answered(_: object) -> None:
            if not arrived.done():
                arrived.set_result(None)

        # One future woken from either side: asyncio.wait costs a set, a waiter and two
        # callbacks on every pass.
        written.add_done_callback(answered)
        try:
            await arrived
        finally:
            self._arrived = None
            written.remove_done_callback(answered)
        return not written.done()

    def _take(self) -> list[Submission]:
        batch = self._queue[: self.settings.max_batch]
        del self._queue[: len(batch)]
        return batch

    def _may_send_after(self, last: _Flight) -> bool:
        """The next batch goes ahead of `last` once it is as large (every batch lands as
        one frame to each listener: many small ones cost more than they save), and when
        each op's base revision is known here (a newer one, heard of through another node,
        needs the database first)."""
        end = min(len(self._queue), self.settings.max_batch)
        if end < len(last.batch) or self.doc.waiting:
            return False
        return all(self._queue[i].revision <= self.doc.revision for i in range(end))

    async def _send(self, batch: list[Submission], after: _Flight | None) -> _Flight | None:
        """Prepare `batch` (on what `after` leaves, if given) and hand it to the group."""
        doc = self.doc
        span, began = commit_span(self.tracer, batch), time.perf_counter()
        try:
            if after is None and max(s.revision for s in batch) > doc.revision:
                # A client may have heard of a revision through another node before the
                # broker brought it here.
                async with self.pool.acquire() as conn:
                    await doc.follow(conn)
            prepared = await self._prepare(batch, after.prepared if after else None)
        except Exception as exc:
            self._failed(batch, span, exc)
            return None
        if not prepared.rows:
            span.end()
            return None
        token = store.new_token()
        written = self.group.send(
            doc.id, prepared.rows, token=token, after=after.token if after else None
        )
        if after is not None:
            instruments.COMMITS_AHEAD.inc()
        return _Flight(batch, prepared, token, written, after is not None, span, began)

    async def _land(self, flight: _Flight) -> bool | None:
        """Wait for `flight`'s answer and settle its ops: True when it was written as sent,
        False when it was not (its ops retried under the lock, or failed), None when it went
        ahead and was refused, unsettled (its statement reached the database before the one
        it follows, or another node wrote first): the caller recalls it."""
        try:
            written = await flight.written
            if not written and flight.ahead:
                return None
            if written:
                self._advance(flight.prepared)
            else:
                metrics.COMMIT_CONFLICTS.inc()
                await self._retry([s for s in flight.prepared.accepted if not s.future.done()])
        except Exception as exc:
            self._failed(flight.batch, flight.span, exc)
            return False
        flight.span.end()
        instruments.COMMIT_DURATION.observe(time.perf_counter() - flight.began)
        instruments.COMMIT_BATCH.observe(len(flight.batch))
        return written

    async def _recall(self, flights: Sequence[_Flight]) -> None:
        """Flights that went ahead and cannot be written as sent: each waits for its answer
        (no), and their ops go back to the front of the queue, in their order."""
        again: list[Submission] = []
        for flight in flights:
            try:
                written = await flight.written
            except Exception:
                written = False
            flight.span.end()
            if written:
                # The one before it failed only on the way back: the database has both.
                async with self.pool.acquire() as conn:
                    await self.doc.follow(conn)
                for sub, row in zip(flight.prepared.accepted, flight.prepared.rows, strict=True):
                    succeed(sub, Outcome(row.revision, row.op))
            else:
                metrics.COMMITS_RECALLED.inc()
                again += [s for s in flight.batch if not s.future.done()]
        self._queue[:0] = again

    def _failed(self, batch: list[Submission], span: trace.Span, exc: Exception) -> None:
        span.record_exception(exc)
        span.end()
        log.exception("commit failed", extra={"path": self.doc.path})
        for sub in batch:
            fail(sub, CollabError("internal_error", f"the op was not committed: {exc}"))

    def _advance(self, prepared: _Prepared) -> None:
        """The cache, the submitters and the broker hear of committed rows, in this order."""
        rows = prepared.rows
        self.doc.advance(rows, result=(prepared.text, prepared.units))
        for sub, row in zip(prepared.accepted, rows, strict=True):
            succeed(sub, Outcome(row.revision, row.op))
        instruments.OPS_COMMITTED.inc(len(rows))
        self._unpublished.extend(rows)
        if self._follower is None or self._follower.done():
            self._follower = self._loop.create_task(self._follow_up())

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

    async def _retry(self, pending: list[Submission]) -> None:
        """After losing a race: under the document's database lock, a bounded number of times.

        Every insert takes that lock for its own duration, so a node that lost a race can
        catch up, transform and insert while holding it: then nobody can take the revision it
        is about to write, and it cannot lose again (no starvation between nodes). Without
        contention the lock is free and a commit is the one statement of its group.
        """
        for _ in range(1, self.settings.commit_attempts):
            prepared, written = await self._commit_locked(pending)
            if not prepared.rows:
                return
            if written:
                self._advance(prepared)
                return
            metrics.COMMIT_CONFLICTS.inc()
            pending = [s for s in prepared.accepted if not s.future.done()]
        for sub in pending:
            fail(sub, CollabError("busy", "the document is too busy; resubmit the op"))

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

    async def _prepare(self, batch: list[Submission], after: _Prepared | None = None) -> _Prepared:
        """Transform each op past everything committed since its base revision, and past
        `after`'s rows when it is in flight. A resubmit of an op not yet committed (in flight,
        or earlier in this batch) is held until that op is decided."""
        doc = self.doc
        if after is None:
            text, revision, units, pending = doc.text, doc.revision, doc.units, []
        else:
            text, revision, units = after.text, after.rows[-1].revision, after.units
            # The rows of every flight not landed yet, not only `after`'s (several go ahead).
            pending = [row for row in after.chain if row.revision > doc.revision]
        rows: list[OpRow] = []
        accepted: list[Submission] = []
        for sub in batch:
            try:
                concurrent = await doc.ops_after(self.pool, sub.revision) + pending + rows
                first = next(
                    (r for r in concurrent if r.client_key == sub.client_key and r.seq == sub.seq),
                    None,
                )
                if first is not None and first.revision > doc.revision:
                    self._held.append(sub)
                    continue
                if first is not None:
                    succeed(sub, Outcome(first.revision, first.op, duplicate=True))
                    continue
                op = ot.transform_past(sub.op, [row.op for row in concurrent])
                new_units = ot.target_length(op)
                if new_units > self.settings.max_document_units and new_units > units:
                    raise CollabError(
                        "too_large",
                        f"the document would exceed {self.settings.max_document_units} units",
                        {"path": doc.path},
                    )
                text = ot.apply(text, op)
            except ot.OTError as exc:
                fail(sub, _ot_error(doc.path, exc))
                continue
            except CollabError as exc:
                fail(sub, exc)
                continue
            revision += 1
            units = new_units
            rows.append(OpRow(revision, op, sub.client_key, sub.seq, sub.user_id))
            accepted.append(sub)
        return _Prepared(rows, accepted, text, units, pending + rows)

    async def _refuse_reused_seqs(self, conn: Conn, accepted: list[Submission]) -> None:
        """No op was missed, so the insert clashed on a resubmit key committed long ago."""
        taken = await store.find_resubmits(
            conn, self.doc.id, [(s.client_key, s.seq) for s in accepted]
        )
        for sub in accepted:
            if (sub.client_key, sub.seq) in taken:
                fail(
                    sub,
                    CollabError(
                        "stale_seq",
                        f"seq {sub.seq} already named an op before revision {sub.revision}",
                        {"path": self.doc.path, "seq": sub.seq},
                    ),
                )
