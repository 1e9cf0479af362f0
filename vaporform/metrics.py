"""Prometheus metrics of the API and the worker: every name is defined here, in one place.

Labels are bounded sets only: route templates (the URL rule, never the raw path), message and
job kinds, models, outcomes. Never a project, user, path or id. The worker adds the Temporal
SDK's own metrics (`temporal_*`, vaporform/worker_metrics.py) and the container start
histogram its workflows record through the SDK's meter (`CONTAINER_START`).

Several API processes (`vaporform api --workers N`) share one port, so a scrape reaches any
one of them: with `PROMETHEUS_MULTIPROC_DIR` set (the CLI sets it for N > 1) every process
writes its values to files there and a scrape sums them (prometheus-client's multiprocess
mode). Gauges say how they add up across processes (`multiprocess_mode`).

`/metrics` is never public: it answers only a bearer token equal to `VAPORFORM_METRICS_TOKEN`
and is off when that is unset (docs/observability.md).
"""

from __future__ import annotations

import bisect
import hmac
import os
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from workflows.containers.names import START_METRIC

# The classic text format, which every Prometheus (and the Temporal SDK's exporter) speaks.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


# --- HTTP and WebSockets (API) -------------------------------------------------------------

# The SLO is p95 < 200 ms: buckets are dense around it.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0)
HTTP_DURATION = Histogram(
    "vaporform_http_request_duration_seconds",
    "HTTP requests: from the first byte in to the last byte out",
    ["method", "route", "status"],
    buckets=HTTP_BUCKETS,
)
HTTP_IN_PROGRESS = Gauge(
    "vaporform_http_requests_in_progress",
    "HTTP requests being served",
    multiprocess_mode="livesum",
)
WS_OPEN = Gauge(
    "vaporform_websocket_connections",
    "Open WebSocket connections",
    ["route"],
    multiprocess_mode="livesum",
)
WS_OPENED = Counter("vaporform_websocket_opened", "WebSocket connections accepted", ["route"])
WS_FRAMES = Counter(
    "vaporform_websocket_frames",
    "WebSocket frames, by direction (in, out)",
    ["route", "direction"],
)

# --- live collaboration (API) --------------------------------------------------------------

# The SLO is < 50 ms from an op in to its ack out.
COLLAB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0)
COLLAB_HANDLED = Histogram(
    "vaporform_collab_message_duration_seconds",
    "Collaboration messages received, by type (invalid: unparseable), and the time to handle "
    "each (for an op: until it is committed and acknowledged)",
    ["kind"],
    buckets=COLLAB_BUCKETS,
)
COLLAB_SENT = Counter(
    "vaporform_collab_messages_sent",
    "Collaboration messages queued to clients, by type (one per recipient)",
    ["kind"],
)
COLLAB_ERRORS = Counter(
    "vaporform_collab_errors", "Collaboration error messages sent, by code", ["code"]
)
COLLAB_RESYNCS = Counter(
    "vaporform_collab_resyncs",
    "Clients told to re-join a document: a revision no longer available (stale_revision) or a "
    "send queue that overflowed (send_queue_overflow)",
    ["reason"],
)
OPS_COMMITTED = Counter("vaporform_collab_ops_committed", "Ops committed to PostgreSQL")
COMMIT_DURATION = Histogram(
    "vaporform_collab_commit_duration_seconds",
    "Group commits: transform and insert of one batch of ops",
    buckets=COLLAB_BUCKETS,
)
COMMIT_BATCH = Histogram(
    "vaporform_collab_commit_batch_ops",
    "Ops per group commit",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
COMMIT_CONFLICTS = Counter(
    "vaporform_collab_commit_conflicts",
    "Commits that lost the race for a revision to another node and were retried",
)
COMMITS_AHEAD = Counter(
    "vaporform_collab_commits_ahead",
    "Batches of a document sent while the one before them was still in flight",
)
COMMITS_RECALLED = Counter(
    "vaporform_collab_commits_recalled",
    "Batches sent ahead that were not written (the one before them was not, or reached the"
    " database after them); sent again",
)
COLLAB_FORWARDED = Counter(
    "vaporform_collab_forwarded_ops",
    "Ops sent to the node that owns their document, by what came of them",
    ["outcome"],  # committed, refused (an error the client gets), absent, unanswered
)
FANOUT_DEPTH = Gauge(
    "vaporform_collab_fanout_queue_depth",
    "Messages waiting in connections' send queues",
    multiprocess_mode="livesum",
)

# --- the garbage collector (API) ----------------------------------------------------------

GC_PAUSE = Histogram(
    "vaporform_gc_pause_seconds",
    "How long each cyclic garbage collection stopped the API's event loop",
    ["generation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
GC_FROZEN = Gauge(
    "vaporform_gc_frozen_objects",
    "Objects the collector no longer walks (gc.freeze once the app is built)",
    multiprocess_mode="livesum",
)

# --- database pools (API and worker) -------------------------------------------------------

DB_POOL = Gauge(
    "vaporform_db_pool_connections",
    "Connections of each asyncpg pool, by state (in_use, idle)",
    ["pool", "state"],
    multiprocess_mode="livesum",
)
DB_POOL_MAX = Gauge(
    "vaporform_db_pool_max_connections",
    "The most connections each pool may open",
    ["pool"],
    multiprocess_mode="livesum",
)

# --- outbox (worker) -----------------------------------------------------------------------

OUTBOX_RELAYED = Counter(
    "vaporform_outbox_relayed",
    "Outbox items handled by the relay: started, duplicate (started before) or deferred",
    ["kind", "outcome"],
)

# --- containers (worker) -------------------------------------------------------------------

# Recorded by ContainerWorkflow through the Temporal SDK's meter (replay-safe), so it is
# exported with the SDK's metrics; `path` is warm (a pool member) or cold, `outcome` running or
# failed. Its buckets are set in vaporform/worker_metrics.py.
CONTAINER_START = START_METRIC
CONTAINER_START_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0)
CONTAINERS = Gauge(
    "vaporform_containers",
    "Managed containers on this worker's Docker host, by state (Docker's status) and role "
    "(project, pool)",
    ["state", "role"],
)
EXEC_DURATION = Histogram(
    "vaporform_container_exec_duration_seconds",
    "Commands run in project containers, by outcome (exited, timed_out)",
    ["outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0),
)

# Always reported, so "no running container" is a 0 and not a missing series.
_container_keys: set[tuple[str, str]] = {("running", "project"), ("running", "pool")}


def set_containers(counts: dict[tuple[str, str], int]) -> None:
    """The census of managed containers: (state, role) -> how many; the rest are 0."""
    for key in _container_keys.difference(counts):
        CONTAINERS.labels(*key).set(0)
    for key, count in counts.items():
        CONTAINERS.labels(*key).set(count)
    _container_keys.update(counts)


# --- AI (worker) ---------------------------------------------------------------------------

AI_STEPS = Counter(
    "vaporform_ai_steps",
    "AI job steps asked of the provider, by outcome (answered, cached, failed)",
    ["model", "kind", "outcome"],
)
AI_STEP_DURATION = Histogram(
    "vaporform_ai_step_duration_seconds",
    "Time to answer one AI step (cache hits excluded)",
    ["model", "kind"],
    buckets=(0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0),
)
AI_CALLS = Counter("vaporform_ai_calls", "Billed model calls", ["model", "kind"])
AI_TOKENS = Counter(
    "vaporform_ai_tokens",
    "Tokens of billed model calls, by type (input, output, cache_creation, cache_read)",
    ["model", "kind", "type"],
)
AI_COST = Counter(
    "vaporform_ai_cost_usd", "Cost of billed model calls, US dollars", ["model", "kind"]
)
AI_BUDGET_REFUSALS = Counter(
    "vaporform_ai_budget_refusals", "Model calls refused by a budget", ["kind"]
)


# --- pools -----------------------------------------------------------------------------------


class SizedPool(Protocol):
    """What sampling needs of an asyncpg pool."""

    def get_size(self) -> int: ...
    def get_idle_size(self) -> int: ...
    def get_max_size(self) -> int: ...


_pools: list[tuple[str, SizedPool]] = []
_reported: set[str] = set()


def track_pool(name: str, pool: SizedPool) -> None:
    """Report `pool` under `name` (pools of one name add up) until `untrack_pool`."""
    _pools.append((name, pool))
    sample_pools()


def untrack_pool(pool: SizedPool) -> None:
    _pools[:] = [(n, p) for n, p in _pools if p is not pool]
    sample_pools()


def sample_pools() -> None:
    sizes: dict[str, list[int]] = {}
    for name, pool in _pools:
        total = sizes.setdefault(name, [0, 0, 0])
        size, idle = pool.get_size(), pool.get_idle_size()
        total[0] += size - idle
        total[1] += idle
        total[2] += pool.get_max_size()
    for name, (in_use, idle, most) in sizes.items():
        DB_POOL.labels(name, "in_use").set(in_use)
        DB_POOL.labels(name, "idle").set(idle)
        DB_POOL_MAX.labels(name).set(most)
    for name in _reported.difference(sizes):  # a pool that is gone reports nothing
        DB_POOL.labels(name, "in_use").set(0)
        DB_POOL.labels(name, "idle").set(0)
        DB_POOL_MAX.labels(name).set(0)
    _reported.update(sizes)


# --- counts of the hot path -----------------------------------------------------------------


class Tally:
    """Increments of one counter (a series) kept in a plain number, added to it in one go by
    `flush_tallies()`: each second (the telemetry sampler) and before every scrape. In
    multiprocess mode every increment of a Prometheus value writes shared memory under a
    lock, 4% of each process's time with two serving collaboration at load. Only the event
    loop's thread may use one (a flush from another thread could lose increments)."""

    __slots__ = ("_pending", "_series")

    def __init__(self, series: Counter) -> None:
        self._series = series
        self._pending = 0

    def inc(self, amount: int = 1) -> None:
        self._pending += amount

    def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, 0
            self._series.inc(pending)


class Observations:
    """Observations of one histogram series, kept as Tally keeps increments: a count per
    bucket and the sum, added to the series in one go by `flush_tallies()`. An observation
    there writes two values (the sum and its bucket), each under a lock and in multiprocess
    mode to shared memory; every collaboration message and every commit makes one."""

    __slots__ = ("_bounds", "_counts", "_series", "_sum")

    def __init__(self, series: Histogram) -> None:
        self._series = series
        self._bounds = list(series._upper_bounds)  # ends with +Inf: every value has a bucket
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def observe(self, amount: float) -> None:
        # As Histogram.observe: the first bucket whose bound is >= amount.
        self._counts[bisect.bisect_left(self._bounds, amount)] += 1
        self._sum += amount

    def flush(self) -> None:
        counts = self._counts
        if not any(counts):
            return
        self._counts = [0] * len(self._bounds)
        total, self._sum = self._sum, 0.0
        # Histogram.observe's own two writes, once per flush instead of once per value.
        self._series._sum.inc(total)
        for value, count in zip(self._series._buckets, counts, strict=True):
            if count:
                value.inc(count)


# Keyed by the series itself (hashed by identity), which the dict keeps alive: an id could be
# reused by another object once its series were gone.
_tallies: dict[Counter | Histogram, Tally | Observations] = {}


def tally(series: Counter) -> Tally:
    """The tally of a counter series (`COUNTER` or `COUNTER.labels(...)`), one per series."""
    found = _tallies.get(series)
    if found is None:
        found = _tallies[series] = Tally(series)
    assert isinstance(found, Tally)
    return found


def observations(series: Histogram) -> Observations:
    """The tally of a histogram series (`HISTOGRAM` or `HISTOGRAM.labels(...)`), one per
    series."""
    found = _tallies.get(series)
    if found is None:
        found = _tallies[series] = Observations(series)
    assert isinstance(found, Observations)
    return found


def flush_tallies() -> None:
    for found in list(_tallies.values()):
        found.flush()


# --- exposition ------------------------------------------------------------------------------


def exposition() -> bytes:
    """This process's metrics, or every API process's in multiprocess mode, as text."""
    sample_pools()
    if multiprocess():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def process_exited() -> None:
    """In multiprocess mode, drop this process's live gauges (call when serving stops)."""
    flush_tallies()
    if multiprocess():
        mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def authorized(header: str | None, token: str | None) -> bool:
    """`Authorization: Bearer <token>` with the configured token; never without one."""
    if not token or not header:
        return False
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def family_names(text: str) -> set[str]:
    """The metric families an exposition text declares (its `# TYPE` lines)."""
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
