"""The submit path against real PostgreSQL: transform, commit order, de-duplication, retries.

Two `LiveDocument`s of one document stand for two API nodes: each has its own cache and
commits through the unique (document, revision) key, with no broker between them, so every
conflict is found by the database and resolved by reload-and-retry.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import asyncpg
import pytest

from collab import ot
from collab.document import LiveDocument, load
from collab.errors import CollabError
from collab.settings import CollabSettings
from collab.submission import Submission
from collab.submit import Committer
from store import collab as store
from store.collab import OpRow
from tests.collab.conftest import make_project

SETTINGS = CollabSettings()


async def _nothing(doc: LiveDocument, rows: Sequence[OpRow]) -> None:
    return None


async def open_doc(
    pool: asyncpg.Pool, text: str = "hello", settings: CollabSettings = SETTINGS
) -> Committer:
    project_id = await make_project(pool)
    async with pool.acquire() as conn:
        row = await store.create_document(conn, project_id, "a.txt", text=text, file_version=1)
    doc = await load(pool, row, history_limit=settings.history_in_memory)
    return Committer(doc, pool, settings, _nothing)


async def second_node(pool: asyncpg.Pool, committer: Committer) -> Committer:
    async with pool.acquire() as conn:
        row = await store.document_by_id(conn, committer.doc.id)
    assert row is not None
    doc = await load(pool, row, history_limit=SETTINGS.history_in_memory)
    return Committer(doc, pool, committer.settings, _nothing)


def sub(revision: int, op: ot.Op, client: str = "c", seq: int = 1) -> Submission:
    return Submission(revision, op, client, seq, None)


async def db_text(pool: asyncpg.Pool, committer: Committer) -> tuple[str, int]:
    async with pool.acquire() as conn:
        row = await store.document_by_id(conn, committer.doc.id)
    assert row is not None
    doc = await load(pool, row, history_limit=10)
    return doc.text, doc.revision


async def test_ops_commit_in_order_and_transform_past_concurrent_ones(pool: asyncpg.Pool) -> None:
    c = await open_doc(pool)
    first = await c.submit(sub(0, [5, " world"], "a", 1))
    assert (first.revision, first.duplicate) == (1, False)
    # Based on revision 0: it must be moved past " world".
    second = await c.submit(sub(0, [">> ", 5], "b", 1))
    assert second.revision == 2
    assert second.op == [">> ", 11]
    assert c.doc.text == ">> hello world"
    assert await db_text(pool, c) == (">> hello world", 2)


async def test_a_resubmit_is_acknowledged_once_and_never_applied_twice(pool: asyncpg.Pool) -> None:
    c = await open_doc(pool)
    original = await c.submit(sub(0, [5, "!"], "me", 7))
    await c.submit(sub(1, ["x", 6], "other", 1))
    again = await c.submit(sub(0, [5, "!"], "me", 7))
    assert again.duplicate
    assert again.revision == original.revision
    assert c.doc.text == "xhello!"
    assert c.doc.revision == 2


async def test_resubmit_seen_by_another_node_is_deduplicated(pool: asyncpg.Pool) -> None:
    a = await open_doc(pool)
    b = await second_node(pool, a)
    await a.submit(sub(0, [5, "!"], "me", 1))
    # Node b has not seen revision 1; the client resubmits there after a reconnect.
    again = await b.submit(sub(0, [5, "!"], "me", 1))
    assert again.duplicate
    assert again.revision == 1
    assert b.doc.text == "hello!"


async def test_reusing_a_seq_for_a_different_later_op_is_refused(pool: asyncpg.Pool) -> None:
    c = await open_doc(pool)
    await c.submit(sub(0, [5, "!"], "me", 1))
    other = await second_node(pool, c)
    await other.submit(sub(1, [6, "?"], "them", 1))
    with pytest.raises(CollabError) as caught:
        await c.submit(sub(2, [7, "#"], "me", 1))
    # Node c catches up to revision 2 first; the first copy of seq 1 is older than that, so
    # the key clashes in the database and the op is refused rather than silently dropped.
    assert caught.value.code == "stale_seq"


@pytest.mark.parametrize(
    ("op", "code"),
    [
        ([6, "x"], "length_mismatch"),
        (["x"], "length_mismatch"),
        ([2, "\ud83d", 3], "surrogate_split"),
    ],
)
async def test_invalid_ops_get_stable_codes(pool: asyncpg.Pool, op: ot.Op, code: str) -> None:
    c = await open_doc(pool)
    with pytest.raises(CollabError) as caught:
        await c.submit(sub(0, op))
    assert caught.value.code == code
    assert c.doc.revision == 0


async def test_revisions_outside_the_history_are_refused(pool: asyncpg.Pool) -> None:
    c = await open_doc(pool)
    with pytest.raises(CollabError) as ahead:
        await c.submit(sub(3, [5, "!"]))
    assert ahead.value.code == "invalid_revision"

    for seq in range(1, 6):
        await c.submit(sub(seq - 1, [4 + seq, "!"], "c", seq))
    async with pool.acquire() as conn:
        await conn.execute(
            "DELETE FROM collab_ops WHERE document_id = $1 AND revision <= 3", c.doc.id
        )
    c.doc.history.clear()  # forget what memory holds, as after a restart
    with pytest.raises(CollabError) as old:
        await c.submit(sub(1, [10, "?"], "d", 1))
    assert old.value.code == "resync"
    # Recent enough bases still work (read back from the database).
    ok = await c.submit(sub(3, [8, "?"], "d", 2))
    assert ok.revision == 6


async def test_group_commit_batches_queued_ops(pool: asyncpg.Pool) -> None:
    c = await open_doc(pool, "")
    outcomes = await asyncio.gather(*(c.submit(sub(0, ["ab"], f"c{i}", 1)) for i in range(50)))
    assert sorted(o.revision for o in outcomes) == list(range(1, 51))
    assert c.doc.text == "ab" * 50
    assert await db_text(pool, c) == ("ab" * 50, 50)


def random_edit(rng: random.Random, text: str) -> ot.Op:
    """Insert or delete at code point boundaries (never inside a surrogate pair)."""
    n = ot.utf16_len(text)
    at = rng.randint(0, len(text))
    start = ot.index_to_utf16(text, at)
    if at < len(text) and rng.random() < 0.4:
        gone = ot.utf16_len(text[at : at + rng.randint(1, 4)])
        return ot.normalize([start, -gone, n - start - gone])
    return ot.normalize([start, rng.choice(["a", "bc", "😀", "中"]), n - start])


async def test_concurrent_submitters_on_two_nodes_converge(pool: asyncpg.Pool) -> None:
    """Clients send ops based on stale revisions to two nodes; the database orders them."""
    a = await open_doc(pool, "start")
    b = await second_node(pool, a)
    rng = random.Random(1234)

    async def client(name: str, node: Committer, rounds: int) -> None:
        for seq in range(1, rounds + 1):
            # Base each edit on whatever this node has, possibly stale by now.
            base_text, base_revision = node.doc.text, node.doc.revision
            await node.submit(
                Submission(base_revision, random_edit(rng, base_text), name, seq, None)
            )

    await asyncio.gather(*(client(f"c{i}", (a, b)[i % 2], 25) for i in range(8)))
    for node in (a, b):
        await node.doc.catch_up(pool)
    assert a.doc.revision == b.doc.revision == 200
    assert a.doc.text == b.doc.text
    assert await db_text(pool, a) == (a.doc.text, 200)


async def test_snapshot_prunes_only_what_is_checkpointed(pool: asyncpg.Pool) -> None:
    c = await open_doc(pool, "")
    for seq in range(1, 21):
        await c.submit(sub(seq - 1, ot.normalize([seq - 1, "x"]), "c", seq))
    async with pool.acquire() as conn:
        await store.save_snapshot(conn, c.doc.id, text=c.doc.text, revision=20, keep_ops=5)
        # Ops after the last checkpoint (revision 0 here) stay: they merge outside changes.
        assert await store.oldest_revision(conn, c.doc.id) == 1
        await store.record_checkpoint(conn, c.doc.id, revision=20, file_version=2)
        await store.save_snapshot(conn, c.doc.id, text=c.doc.text, revision=20, keep_ops=5)
        assert await store.oldest_revision(conn, c.doc.id) == 16
    assert await db_text(pool, c) == ("x" * 20, 20)
