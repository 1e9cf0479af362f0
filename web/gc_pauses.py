"""The API process's garbage collector: fewer, shorter stops of the event loop.

CPython's cyclic collector runs on the thread that allocates, here the event loop's, and
stops it while it walks the generations it collects. With the defaults (a collection of the
young generation every 700 allocations, the others every 10 of the one below) an API serving
1,000 collaborators ran a full collection every 1.5-3 s, walking 160,000-320,000 objects and
stopping every connection for 120-270 ms each time (250 files x 4 writers at 1 edit/s each:
e2e p99 96-184 ms; bench/collab_results.md).

`tune()` does what long-running Python servers commonly do, once the app is built:
- `gc.freeze()`: what was imported and built at start (130,000 objects: modules, classes,
  functions, the app) is never garbage; the collector stops walking it.
- A young generation of 10,000 allocations, and a full collection after 100 of the middle
  one rather than 10: what an op allocates for itself (its message, future and frames) dies
  before it is promoted, the older generations grow slowly, and a full collection comes
  every several minutes instead of every few seconds.
Same point, 20 s: 112 young collections (107 under 10 ms, none over 50), 10 of the middle
generation (16 ms on average, none over 100), no full one; e2e p99 26 ms. A young
generation of 50,000 made pauses rarer but longer (the middle one up to 320 ms).
Garbage without cycles is freed at once by reference counting, whatever the thresholds.

What lives long and grows is best kept out of the collector's sight: a live document's older
ops are bytes and ints, not objects (collab/history.py; they had filled the young generation
every 5 s at 1,000 edits/s, each young collection then taking 20-25 ms), and a socket waiting
for its next message holds three coroutines, not seven (web/socket_reads.py).

Every collection's pause goes to `vaporform_gc_pause_seconds`. The collector's callback only
notes it: a Prometheus metric takes a lock the interrupted code may be holding, so `report()`
(the telemetry sampler, every second) moves the notes into the histogram.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from typing import Any

from vaporform import metrics

YOUNG_ALLOCATIONS = 10_000
# Collections of one generation between two of the next (CPython's defaults: 10 and 10).
MIDDLE_EVERY = 10
OLD_EVERY = 100

# (generation, seconds) of collections not yet reported; bounded if nobody reports.
_pauses: deque[tuple[int, float]] = deque(maxlen=10_000)
_started = 0.0


def _note(phase: str, info: dict[str, Any]) -> None:
    global _started
    if phase == "start":
        _started = time.perf_counter()
    else:
        _pauses.append((int(info["generation"]), time.perf_counter() - _started))


def tune() -> None:
    """Freeze what exists, set the thresholds, note the pauses (for the serving processes
    only: a test run's own objects must stay collectable)."""
    gc.collect()  # what start-up left over, so it is not frozen for ever
    gc.freeze()
    gc.set_threshold(YOUNG_ALLOCATIONS, MIDDLE_EVERY, OLD_EVERY)
    if _note not in gc.callbacks:
        gc.callbacks.append(_note)
    metrics.GC_FROZEN.set(gc.get_freeze_count())


def report() -> None:
    """Move the pauses noted since the last call into the histogram."""
    while _pauses:
        generation, seconds = _pauses.popleft()
        metrics.GC_PAUSE.labels(str(generation)).observe(seconds)
