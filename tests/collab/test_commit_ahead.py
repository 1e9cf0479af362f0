"""A document's next batch is sent while the one before it is in flight, against real
PostgreSQL.

The batch sent ahead names the token of the one before it: the database writes it only after
that one is committed, and never when that one was not, even when another writer left the
head at the very revision it expects. The committer keeps one batch ahead, and when the one
before it loses a race, sends it again.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

import asyncpg
import pytest
from prometheus_client import REGISTRY

from collab.document import load
from collab.group import GroupCommit
from collab.settings import CollabSettings
from collab.submission import Outcome, Submission
from collab.submit import Committer
from store import collab as store
from store.db import Conn
from tests.collab.test_group_commit import (
    Published,
    db_text,
    documents,
    logged,
    op_row,
)
from tests.collab.test_submit import random_edit
from tests.support import wait_until
from vaporform import metrics

# One op a batch, so that concurrent submitters always leave a batch to send ahead.
AHEAD = replace(CollabSettings(), max_batch=1)


def counted(name: str) -> float:
    metrics.flush_tallies()  # the loop's tallies, as a scrape adds them up
    return REGISTRY.get_sample_value(name) or 0.0


async def waits_for_a_lock(watcher: Conn, pid: int) -> bool:
    found = await watcher.fetchval(
        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid
    )
    return bool(found == "Lock")


@pytest.mark.parametrize("first_commits", [True, False])
async def test_a_batch_sent_ahead_is_written_after_and_only_if_the_one_before_it(
    pool: asyncpg.Pool, first_commits: bool
) -> None:
    (document,) = await documents(pool, 1)
    async with pool.acquire() as first, pool.acquire() as second:
        transaction = first.transaction()
        await transaction.start()
        rows = [op_row(1, "u/a", 1), op_row(2, "u/a", 2)]
        assert await store.insert_ops(first, document.id, rows, token=11)
        ahead = asyncio.ensure_future(
            store.insert_ops(second, document.id, [op_row(3, "u/b", 1)], token=12, after=11)
        )
        pid = second.get_server_pid()
        await wait_until(
            lambda: waits_for_a_lock(first, pid), what="the batch ahead to wait for the first"
        )
        if first_commits:
            await transaction.commit()
        else:
            await transaction.rollback()
        written = await ahead
    assert written is first_commits
    expected = [(1, "u/a", 1), (2, "u/a", 2), (3, "u/b", 1)] if first_commits else []
    assert await logged(pool, document.id) == expected


async def test_a_batch_sent_ahead_is_refused_over_another_writers_head(pool: asyncpg.Pool) -> None:
    """The head is at the revision the batch expects, but another writer put it there."""
    (document,) = await documents(pool, 1)
    async with pool.acquire() as conn:
        assert await store.insert_ops(
            conn, document.id, [op_row(1, "x/y", 1), op_row(2, "x/y", 2)], token=21
        )
        assert not await store.insert_ops(conn, document.id, [op_row(3, "u/b", 1)], after=11)
        # The batch the head does come from is taken.
        assert await store.insert_ops(conn, document.id, [op_row(3, "u/b", 1)], after=21)
    assert [r for r, _, _ in await logged(pool, document.id)] == [1, 2, 3]


@pytest.mark.parametrize("ahead", [1, 3])
async def test_one_node_keeps_batches_ahead_and_commits_every_op_once_in_order(
    pool: asyncpg.Pool, ahead: int
) -> None:
    """With several batches in flight, each is prepared past all of them, not only the last
    (three ahead once rejected most first ops: "base lengths differ")."""
    (row,) = await documents(pool, 1, "start")
    published = Published()
    settings = replace(AHEAD, commits_ahead=ahead)
    node = await _committer(pool, row, published, GroupCommit(pool, settings), settings)
    sent_ahead = counted("vaporform_collab_commits_ahead_total")
    rng = random.Random(7)
    acked: dict[tuple[str, int], Outcome] = {}

    async def client(name: str, rounds: int) -> None:
        for seq in range(1, rounds + 1):
            edit = random_edit(rng, node.doc.text)
            acked[(name, seq)] = await node.submit(
                Submission(node.doc.revision, edit, name, seq, None)
            )

    await asyncio.gather(*(client(f"u/c{i}", 10) for i in range(5)))
    assert counted("vaporform_collab_commits_ahead_total") - sent_ahead >= 10
    found = await logged(pool, row.id)
    assert [r for r, _, _ in found] == list(range(1, 51))
    assert {acked[(k, s)].revision for _, k, s in found} == set(range(1, 51))
    assert all(acked[(k, s)].revision == r for r, k, s in found)
    assert await db_text(pool, row.id) == (node.doc.text, 50)
    assert [r.revision for r in published.rows[row.id]] == list(range(1, 51))


async def test_a_lost_race_sends_what_went_ahead_again(pool: asyncpg.Pool) -> None:
    (row,) = await documents(pool, 1)
    node = await _committer(pool, row, Published())
    recalled = counted("vaporform_collab_commits_recalled_total")
    # Another writer takes revision 1 behind the node's back: its first batch loses, and the
    # one it sent ahead cannot be written either.
    async with pool.acquire() as conn:
        assert await store.insert_ops(conn, row.id, [op_row(1, "x/y", 1)])
    outcomes = await asyncio.gather(
        *(node.submit(Submission(0, [5, f"{i}"], f"u/{i}", 1, None)) for i in range(4))
    )
    assert counted("vaporform_collab_commits_recalled_total") - recalled >= 1
    assert sorted(o.revision for o in outcomes) == [2, 3, 4, 5]
    found = await logged(pool, row.id)
    assert found[0] == (1, "x/y", 1)
    assert sorted(k for _, k, _ in found[1:]) == [f"u/{i}" for i in range(4)]
    assert await db_text(pool, row.id) == (node.doc.text, 5)


async def test_two_nodes_sending_ahead_on_one_document_converge(pool: asyncpg.Pool) -> None:
    (row,) = await documents(pool, 1, "start")
    nodes = [await _committer(pool, row, Published(), GroupCommit(pool, AHEAD)) for _ in "ab"]
    rng = random.Random(11)
    acked: dict[tuple[str, int], Outcome] = {}

    async def client(name: str, node: Committer, rounds: int) -> None:
        for seq in range(1, rounds + 1):
            edit = random_edit(rng, node.doc.text)
            acked[(name, seq)] = await node.submit(
                Submission(node.doc.revision, edit, name, seq, None)
            )

    await asyncio.gather(*(client(f"u/c{i}", nodes[i % 2], 8) for i in range(6)))
    for node in nodes:
        await node.doc.catch_up(pool)
    a, b = nodes
    assert a.doc.revision == b.doc.revision == 48
    assert a.doc.text == b.doc.text
    assert await db_text(pool, row.id) == (a.doc.text, 48)
    found = await logged(pool, row.id)
    assert [r for r, _, _ in found] == list(range(1, 49))
    assert all(acked[(k, s)].revision == r for r, k, s in found)
    for i in range(6):
        mine = [s for _, k, s in found if k == f"u/c{i}"]
        assert mine == list(range(1, 9))  # each client's ops in its own order


async def _committer(
    pool: asyncpg.Pool,
    row: store.Document,
    published: Published,
    group: GroupCommit | None = None,
    settings: CollabSettings = AHEAD,
) -> Committer:
    doc = await load(pool, row, history_limit=settings.history_in_memory)
    return Committer(doc, pool, settings, published, group=group or GroupCommit(pool, settings))
