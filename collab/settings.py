"""Limits and timings of live collaboration (one place, so tests and benches can change them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CollabSettings:
    max_message_bytes: int = 256 * 1024
    max_op_units: int = 64 * 1024  # inserted + deleted UTF-16 units in one op
    max_document_units: int = 4 * 1024 * 1024
    max_chat_chars: int = 4000
    # Token bucket per connection: sustained ops per second and burst.
    op_rate: float = 100.0
    op_burst: int = 200
    send_queue: int = 1024  # messages waiting for a slow client before it is disconnected
    # Outgoing messages due within this long leave as one frame per connection (sent at once
    # when the last flush is older); presence changes are coalesced over the longer tick.
    # 0: a flush at the end of the event loop's turn, and whatever comes while a connection's
    # previous frames are still being written waits for the next. A 4 ms tick held every ack
    # ~2 ms on average: 1 doc x 10 typing closed-loop went 1,576 -> 2,884 edits/s without it,
    # and over two reps the many-document closed loops were no slower (bench/collab_results.md).
    fanout_tick_s: float = 0.0
    presence_tick_s: float = 0.25
    max_joined: int = 64  # documents open on one connection
    # Group commit: at most this many queued ops of one document go in one transaction...
    max_batch: int = 64
    # ...and the batches of many documents ready at once share one, up to this many ops in all,
    # with at most this many such transactions in flight on one node (collab/submit.py).
    max_group_ops: int = 1024
    commit_groups_in_flight: int = 2
    # Batches of one document sent while the one before them is still in flight (0: one at a
    # time). Each names the one before it, so it is written only after and only if that was.
    commits_ahead: int = 1
    commit_attempts: int = 4
    history_in_memory: int = 2000  # recent ops kept per live document (collab/history.py)
    snapshot_every: int = 500
    keep_ops: int = 1000  # ops kept in PostgreSQL behind the latest snapshot
    # A document with edits becomes a file version once it is idle for `checkpoint_idle_s`,
    # and while edits go on after `checkpoint_every_ops` of them, but not sooner than
    # `checkpoint_busy_s` after its last save: a version writes the whole text, its blob, its
    # audit entry and tells the workspace, which for a crowded file every 200 edits cost a
    # third of the API's throughput (bench/collab_results.md).
    checkpoint_every_ops: int = 200
    checkpoint_idle_s: float = 5.0
    checkpoint_busy_s: float = 10.0
    checkpoints_in_flight: int = 2  # on one node; the others queue (collab/room.py)
    presence_heartbeat_s: float = 10.0
    presence_timeout_s: float = 30.0
    # Liveness never asks a client to speak (a reader sends nothing). A connection that was
    # sent nothing for `keepalive_s` gets an empty frame: proxies see traffic, and a peer
    # that is gone has data it never acknowledges. The API's sockets drop a peer that
    # acknowledges nothing for `dead_peer_s` (TCP keepalive and TCP_USER_TIMEOUT, set in
    # web/serving.py; uvicorn's protocol pings use the same two figures).
    keepalive_s: float = 25.0
    dead_peer_s: float = 60.0
