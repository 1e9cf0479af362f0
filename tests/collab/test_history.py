"""A live document's in-memory history: what goes in comes back the same, whichever form it
was kept in, and old ops cost the garbage collector nothing."""

from __future__ import annotations

import gc
import uuid

from collab.history import History
from store.collab import OpRow

AUTHOR = uuid.uuid4()


def rows(first: int, count: int) -> list[OpRow]:
    return [
        OpRow(
            r,
            [r, f"é{r}\U0001f600", -1] if r % 2 else [{"x": r}, r],
            f"c/{r % 7}",
            r,
            AUTHOR if r % 3 else None,
        )
        for r in range(first, first + count)
    ]


def test_ops_read_back_the_same_from_either_form() -> None:
    history = History(100, recent_s=2.0)
    history.extend(rows(1, 30), now=0.0)  # old by the time of the next
    history.extend(rows(31, 10), now=5.0)
    assert len(history) == 40
    assert history.first_revision == 1
    assert history.newest(40) == rows(1, 40)
    assert history.newest(5) == rows(36, 5)  # only recent ones
    assert history.newest(12) == rows(29, 12)  # across both
    assert history.newest(500) == rows(1, 40)


def test_the_oldest_go_past_the_limit() -> None:
    history = History(25, recent_s=2.0)
    history.extend(rows(1, 20), now=0.0)
    history.extend(rows(21, 20), now=10.0)  # more recent ones than the limit
    assert len(history) == 25
    assert history.first_revision == 16
    assert history.newest(25) == rows(16, 25)
    history.extend(rows(41, 3), now=20.0)
    assert history.first_revision == 19
    assert history.newest(25) == rows(19, 25)


def test_cleared_history_starts_again_at_any_revision() -> None:
    history = History(50, recent_s=0.0)
    history.extend(rows(1, 10), now=0.0)
    history.clear()
    assert history.first_revision is None
    assert history.newest(3) == []
    history.extend(rows(500, 4), now=1.0)
    history.extend(rows(504, 1), now=2.0)
    assert history.first_revision == 500
    assert history.newest(5) == rows(500, 5)


def test_an_op_the_fast_encoder_refuses_reads_back_the_same() -> None:
    odd = OpRow(1, [3, "\ud800x", 2], "c/1", 1, None)  # a lone surrogate
    history = History(10, recent_s=0.0)
    history.extend([odd], now=0.0)
    history.extend(rows(2, 1), now=1.0)
    assert history.newest(2) == [odd, *rows(2, 1)]


def test_old_ops_are_no_objects_for_the_collector() -> None:
    history = History(20_000, recent_s=1.0)
    gc.collect()
    before = len(gc.get_objects())
    history.extend(rows(1, 10_000), now=0.0)
    history.extend(rows(10_001, 1), now=5.0)
    gc.collect()
    # As objects, 10,000 rows would be 20,000 more (a row and its op's list each).
    assert len(gc.get_objects()) - before < 100
    assert len(history) == 10_001
