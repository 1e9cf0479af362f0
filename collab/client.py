"""The client side of the protocol as a pure state machine (ot.js ``Client``), no I/O.

At most one op is in flight; edits made meanwhile are composed into one buffered op. A
remote op is transformed past the in-flight and buffered ops before it is applied locally.
Used by the tests and by bench/collab_bench.py; a browser client does the same in JavaScript.
"""

from __future__ import annotations

from collab import ot


class OTClient:
    def __init__(self, text: str, revision: int) -> None:
        self.text = text
        self.revision = revision
        self.inflight: ot.Op | None = None
        self.buffer: ot.Op | None = None
        self.seq = 0

    def edit(self, op: ot.Op) -> ot.Op | None:
        """Apply a local edit; the op to send now, or None (it waits behind the in-flight one)."""
        self.text = ot.apply(self.text, op)
        if self.inflight is None:
            self.inflight = op
            self.seq += 1
            return op
        self.buffer = op if self.buffer is None else ot.compose(self.buffer, op)
        return None

    def acked(self, revision: int) -> ot.Op | None:
        """Our in-flight op became `revision`; the buffered op to send next, if any."""
        self.revision = revision
        self.inflight, self.buffer = self.buffer, None
        if self.inflight is not None:
            self.seq += 1
        return self.inflight

    def remote(self, op: ot.Op, revision: int) -> ot.Op:
        """Someone else's op that became `revision`; returns the op applied to our text."""
        if self.inflight is not None:
            self.inflight, op = ot.transform(self.inflight, op)
        if self.buffer is not None:
            self.buffer, op = ot.transform(self.buffer, op)
        self.text = ot.apply(self.text, op)
        self.revision = revision
        return op
