"""The collaboration metrics' series, looked up once: the hot path only adds to them.

Labels are the protocol's message types and error codes, fixed sets (vaporform/metrics.py).
"""

from __future__ import annotations

from collab.protocol import ClientType, ServerType
from vaporform import metrics

INVALID = "invalid"  # a frame that is not a valid envelope

HANDLED = {
    kind: metrics.observations(metrics.COLLAB_HANDLED.labels(kind))
    for kind in [*(client.value for client in ClientType), INVALID]
}
COMMIT_DURATION = metrics.observations(metrics.COMMIT_DURATION)
COMMIT_BATCH = metrics.observations(metrics.COMMIT_BATCH)
OPS_COMMITTED = metrics.tally(metrics.OPS_COMMITTED)
COMMITS_AHEAD = metrics.tally(metrics.COMMITS_AHEAD)
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
