"""Server envelope ids: 32 hex digits, never the same twice, in one process or across the
worker processes a server forks."""

from __future__ import annotations

import json
import multiprocessing
import re

from collab.protocol import ServerType, envelope


def _an_id() -> str:
    found: str = json.loads(envelope(ServerType.PONG, {}, user_id=None, session_id=None))["id"]
    return found


def _child_id(queue: multiprocessing.Queue[str]) -> None:
    queue.put(_an_id())


def test_ids_are_32_hex_digits_and_unique() -> None:
    ids = [_an_id() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", found) for found in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_worker_draws_its_own_ids() -> None:
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[str] = context.Queue()
    mine = _an_id()
    children = [context.Process(target=_child_id, args=(queue,)) for _ in range(2)]
    for child in children:
        child.start()
    theirs = [queue.get(timeout=30) for _ in children]
    for child in children:
        child.join(timeout=30)
    # The counted half may well match (each process counts from where the parent was);
    # the random half is each process's own.
    prefixes = {found[:16] for found in [mine, *theirs]}
    assert len(prefixes) == 3
