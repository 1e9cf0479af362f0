"""Coalesced fan-out: what is due for a connection within one tick leaves as one frame.

Messages reach a connection's `Outbox` already serialised (one string, built once and shared
by every recipient). The hub's `Fanout` flushes every outbox that holds something in one go:
at once when the last flush is older than a tick, else when the tick is up (the default tick
is 0: the flush ends the event loop's turn). A flush turns the pending messages of an outbox
into frames (JSON arrays of envelopes, or one envelope per frame for clients that asked for
`?batch=0`); outboxes holding the same messages get the very same frame string, joined once.
A message offered with a `slot` (a participant's cursor in a file, a participant's presence)
replaces the one still pending in that slot, at the end of the queue, so it never overtakes
the ops it was computed after.

An outbox whose writer is still sending keeps collecting: its writer asks for another flush
when it is done, so a slow connection gets fewer, larger frames. More than `limit` messages
without a slot waiting (sent but not written count too) overflow it: `on_overflow` is called
once and the writer stops. Messages in slots do not count: at most one waits per slot, so they
are bounded by the participants (and their files) anyway, and a thousand people joining one
project must not overflow the connections of everybody there. (A block of presence changes,
collab/cursors.py, has a slot of its own: at most a few per presence tick wait, while a write
is in flight.) A message may be several envelopes joined by commas: it goes into an array
frame as they are.

An array-frame outbox that has sent nothing for a while gets an empty frame, `[]` (a frame of
no messages; `keep_alive`): the hub's tick asks for it, for the liveness of a connection whose
client only reads (collab/settings.py).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Hashable

# A frame stops growing past this many characters (clients' default message limits are 1 MiB).
FRAME_CHARS = 64 * 1024
KEEPALIVE_FRAME = "[]"

Cache = dict[tuple[int, ...], tuple[list[str], str]]


class Outbox:
    def __init__(
        self,
        fanout: Fanout,
        *,
        batching: bool,
        limit: int,
        on_overflow: Callable[[], None],
    ) -> None:
        self.fanout = fanout
        self.batching = batching
        self.limit = limit
        self.on_overflow = on_overflow
        self._pending: list[str | None] = []
        self._slots: dict[Hashable, int] = {}
        self._count = 0  # messages in _pending (holes left by superseded ones excluded)
        self._ready: list[str] = []
        self._ready_count = 0
        self._in_flight = 0
        # Messages without a slot ready and in flight; with those pending (every slot holds
        # one pending message: `_count - len(_slots)`) they are what `limit` bounds.
        self._ready_unslotted = 0
        self._in_flight_unslotted = 0
        self._writing = False
        # The writer waits on a bare future of this loop, not on an asyncio.Event: every
        # Event.wait asks for the running loop, which in Python 3.11 is a getpid() system
        # call (10% of the loop's time at 200 people in one file, one wait per frame).
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.last_sent = time.monotonic()  # when the writer last took frames
        fanout.outboxes.add(self)

    def __len__(self) -> int:
        """Messages not yet handed to the socket."""
        return self._count + self._ready_count + self._in_flight

    def _unslotted(self) -> int:
        pending = self._count - len(self._slots)
        return pending + self._ready_unslotted + self._in_flight_unslotted

    def offer(self, text: str, slot: Hashable | None = None) -> None:
        if self.closed:
            return
        if slot is not None:
            previous = self._slots.get(slot)
            if previous is not None:
                self._pending[previous] = None
                self._count -= 1
            self._slots[slot] = len(self._pending)
        elif self._unslotted() >= self.limit:
            self.close()
            self.on_overflow()
            return
        self._pending.append(text)
        self._count += 1
        self.fanout.mark(self)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        """Stop: the writer returns None and nothing more is queued."""
        self.closed = True
        self._pending.clear()
        self._slots.clear()
        self._count = 0
        self._wake()

    def take(self, cache: Cache) -> None:
        """Flush: turn what is pending into frames for the writer (if it is not busy)."""
        if self._writing or self.closed or not self._count:
            return
        items = [text for text in self._pending if text is not None]
        self._ready_unslotted += self._count - len(self._slots)
        self._pending.clear()
        self._slots.clear()
        self._count = 0
        if self.batching:
            self._ready.extend(_frames(items, cache))
        else:
            self._ready.extend(items)
        self._ready_count += len(items)
        self._wake()

    def keep_alive(self, now: float, every: float) -> None:
        """An empty frame, when nothing at all has left for `every` seconds. Only for array
        frames: a client of one envelope per frame has no message that means nothing."""
        if (
            self.batching
            and not self.closed
            and not self._writing
            and not self._ready
            and not self._count
            and now - self.last_sent >= every
        ):
            self._ready.append(KEEPALIVE_FRAME)
            self._wake()

    async def frames(self) -> list[str] | None:
        """For the writer: the next frames to send, once there are some; None: stop."""
        self._writing = False
        self._in_flight = self._in_flight_unslotted = 0
        if self._count:
            self.fanout.mark(self)
        while not self._ready and not self.closed:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.closed:
            return None
        found, self._ready = self._ready, []
        self._in_flight, self._ready_count = self._ready_count, 0
        self._in_flight_unslotted, self._ready_unslotted = self._ready_unslotted, 0
        self._writing = True
        self.last_sent = time.monotonic()
        return found


def _frames(items: list[str], cache: Cache) -> list[str]:
    found: list[str] = []
    start, size = 0, 0
    for index, text in enumerate(items):
        size += len(text) + 1
        if size >= FRAME_CHARS or index == len(items) - 1:
            found.append(_frame(items[start : index + 1], cache))
            start, size = index + 1, 0
    return found


def _frame(items: list[str], cache: Cache) -> str:
    key = tuple(map(id, items))
    hit = cache.get(key)
    if hit is None:
        # The cache holds the items too, so their ids stay theirs until the flush ends.
        hit = cache[key] = (items, "[" + ",".join(items) + "]")
    return hit[1]


class Fanout:
    """The flush schedule of one process's outboxes."""

    def __init__(self, tick_s: float) -> None:
        self.tick_s = tick_s
        self._dirty: dict[int, Outbox] = {}
        self._scheduled: asyncio.Handle | None = None
        self._last = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None  # cached: see Outbox.__init__
        self.flushes = 0
        # Every open connection's outbox, for the queue depth metric (collab/hub.py).
        self.outboxes: weakref.WeakSet[Outbox] = weakref.WeakSet()

    def depth(self) -> int:
        """Messages waiting in all outboxes, not yet handed to a socket."""
        return sum(len(outbox) for outbox in list(self.outboxes) if not outbox.closed)

    def mark(self, outbox: Outbox) -> None:
        self._dirty[id(outbox)] = outbox
        if self._scheduled is None:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            wait = self._last + self.tick_s - time.monotonic()
            if wait > 0:
                self._scheduled = loop.call_later(wait, self.flush)
            else:
                self._scheduled = loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = None
        self._last = time.monotonic()
        self.flushes += 1
        dirty, self._dirty = self._dirty, {}
        cache: Cache = {}
        for outbox in dirty.values():
            outbox.take(cache)

    def keep_alive(self, every: float) -> None:
        """An empty frame to every array-frame connection that was sent nothing for `every`
        seconds."""
        now = time.monotonic()
        for outbox in list(self.outboxes):
            outbox.keep_alive(now, every)

    def cancel(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
