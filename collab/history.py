"""The committed ops a live document keeps in memory, in a form the garbage collector skips.

A live document keeps its last `history_in_memory` ops (2,000) so that an op sent on an older
revision can be transformed past what came since without a query. Kept as objects, each op is
two more (its `OpRow` and its op's list) for CPython's cyclic collector to walk: at 1,000
edits/s over 250 files they filled the young generation every 5 s, and every young collection
walked them with everything else alive (20-25 ms with the event loop stopped, the API's
largest e2e tail there: bench/collab_results.md). A node that stays up moves them on to the
old generation, where 250 files x 2,000 ops are a million objects for every full collection.

So only the ops of the last `recent_s` seconds stay objects: an op's base revision is
rarely older than a round trip and a little typing, so they are what transforms read. Older
ones are kept as bytes, ints and strings (an op as its JSON, its resubmit key, seq and author
in columns), which the collector does not track, and are built again when read.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from collections.abc import Iterable
from typing import Any
from uuid import UUID

import orjson

from store.collab import OpRow

# Ops younger than this stay objects (a few seconds of a busy document).
RECENT_S = 2.0


def _dump(op: list[Any]) -> bytes:
    try:
        return orjson.dumps(op)
    except TypeError:  # a lone surrogate, which only the standard library writes
        return json.dumps(op).encode()


def _load(text: bytes) -> list[Any]:
    try:
        result: list[Any] = orjson.loads(text)
    except orjson.JSONDecodeError:
        result = json.loads(text)
    return result


class History:
    """Consecutive committed revisions, oldest first, at most `limit` of them."""

    def __init__(self, limit: int, *, recent_s: float = RECENT_S) -> None:
        self.limit = limit
        self.recent_s = recent_s
        # The newest ops, as objects, and when each came.
        self._rows: deque[OpRow] = deque()
        self._at: deque[float] = deque()
        # The older ones (revisions `_first` on), one column per field.
        self._first = 0
        self._ops: deque[bytes] = deque()
        self._keys: deque[str] = deque()
        self._seqs: deque[int] = deque()
        self._users: deque[int] = deque()  # an index into `_authors`, -1 for none
        self._authors: list[UUID] = []
        self._author_index: dict[UUID, int] = {}

    def __len__(self) -> int:
        return len(self._ops) + len(self._rows)

    @property
    def first_revision(self) -> int | None:
        """The oldest revision kept; None when nothing is."""
        if self._ops:
            return self._first
        return self._rows[0].revision if self._rows else None

    def extend(self, rows: Iterable[OpRow], now: float) -> None:
        """Add the rows that follow the newest kept, which came at `now` (monotonic)."""
        for row in rows:
            self._rows.append(row)
            self._at.append(now)
        self._settle(now)

    def clear(self) -> None:
        for column in (self._rows, self._at, self._ops, self._keys, self._seqs, self._users):
            column.clear()

    def newest(self, count: int) -> list[OpRow]:
        """The newest `count` rows (at most all of them), oldest first."""
        # From the newest end: only the last few are wanted nearly always.
        found = list(itertools.islice(reversed(self._rows), count))
        found.reverse()
        older = min(count - len(found), len(self._ops))
        if older <= 0:
            return found
        start = self._first + len(self._ops) - older
        columns = [
            list(itertools.islice(reversed(column), older))[::-1]
            for column in (self._ops, self._keys, self._seqs, self._users)
        ]
        authors = self._authors
        built = [
            OpRow(start + i, _load(op), key, seq, authors[user] if user >= 0 else None)
            for i, (op, key, seq, user) in enumerate(zip(*columns, strict=True))
        ]
        return built + found

    def _settle(self, now: float) -> None:
        """Move the rows older than `recent_s` into the columns; drop the oldest over the
        limit."""
        rows, at, before = self._rows, self._at, now - self.recent_s
        while rows and (at[0] < before or len(rows) > self.limit):
            row = rows.popleft()
            at.popleft()
            if not self._ops:
                self._first = row.revision
            self._ops.append(_dump(row.op))
            self._keys.append(row.client_key)
            self._seqs.append(row.seq)
            self._users.append(self._author(row.user_id))
        over = len(self) - self.limit
        for _ in range(min(over, len(self._ops))):
            for column in (self._ops, self._keys, self._seqs, self._users):
                column.popleft()
            self._first += 1

    def _author(self, user_id: UUID | None) -> int:
        if user_id is None:
            return -1
        index = self._author_index.get(user_id)
        if index is None:
            index = self._author_index[user_id] = len(self._authors)
            self._authors.append(user_id)
        return index
