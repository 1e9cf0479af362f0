"""The collaboration metrics' series, looked up once: the hot path only adds to them.

Labels are the protocol's message types and error codes, fixed sets (vaporform/metrics.py).
"""

from __future__ import annotations

from collab.protocol import ClientType, ServerType
from vaporform import metrics

INVALID = "invalid"  # a frame that is not a valid envelope

HANDLED = {kind.value: metrics.COLLAB_HANDLED.labels(kind.value) for kind in ClientType}
HANDLED[INVALID] = metrics.COLLAB_HANDLED.labels(INVALID)
SENT = {kind: metrics.tally(metrics.COLLAB_SENT.labels(kind.value)) for kind in ServerType}
STALE_REVISION = metrics.COLLAB_RESYNCS.labels("stale_revision")
SEND_QUEUE_OVERFLOW = metrics.COLLAB_RESYNCS.labels("send_queue_overflow")


def sent(kind: ServerType, count: int = 1) -> None:
    if count:
        SENT[kind].inc(count)


def error_sent(code: str) -> None:
    metrics.COLLAB_ERRORS.labels(code).inc()
    if code == "resync":
        STALE_REVISION.inc()
