"""Group commit across documents, against real PostgreSQL.

The batches of many documents ready at once go in one statement; each document still wins or
loses its revisions on its own, de-duplicates on (client_key, seq) and is acknowledged only
after its rows are committed. Committers with separate `GroupCommit`s stand for two API nodes.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from collab.document import LiveDocument, load
from collab.errors import CollabError
from collab.group import GroupCommit
from collab.settings import CollabSettings
from collab.submission import Outcome, Submission
from collab.submit import Committer
from store import collab as store
from store.collab import OpRow
from store.db import Conn
from tests.collab.conftest import make_project
from tests.collab.test_submit import random_edit
from tests.support import wait_until
from vaporform.config import Config

SETTINGS = CollabSettings()


class Published:
    """What the committers handed to the broker, per document."""

    def __init__(self) -> None:
        self.rows: dict[int, list[OpRow]] = {}

    async def __call__(self, doc: LiveDocument, rows: Sequence[OpRow]) -> None:
        self.rows.setdefault(doc.id, []).extend(rows)


@pytest.fixture
def groups(monkeypatch: pytest.MonkeyPatch) -> list[set[int]]:
    """The documents of every group statement sent, in order."""
    sent: list[set[int]] = []
    insert = store.insert_ops_of_documents

    async def spy(conn: Conn, documents: Mapping[int, Sequence[OpRow]], **heads: Any) -> set[int]:
        sent.append(set(documents))
        return await insert(conn, documents, **heads)

    monkeypatch.setattr(store, "insert_ops_of_documents", spy)
    return sent


@pytest.fixture
async def lean(config: Config) -> AsyncIterator[asyncpg.Pool]:
    """The API's commit pool, of one connection, so its statements can be watched."""
    found = await store.create_lean_pool(config.database_url, max_size=1)
    yield found
    await found.close()


async def documents(pool: asyncpg.Pool, count: int, text: str = "hello") -> list[store.Document]:
    project_id = await make_project(pool)
    async with pool.acquire() as conn:
        return [
            await store.create_document(conn, project_id, f"f{i}.txt", text=text, file_version=1)
            for i in range(count)
        ]


async def committer(
    pool: asyncpg.Pool,
    row: store.Document,
    *,
    commits: asyncpg.Pool | None = None,
    group: GroupCommit | None = None,
    publish: Published | None = None,
) -> Committer:
    doc = await load(pool, row, history_limit=SETTINGS.history_in_memory)
    commits = commits or pool
    group = group or node_group(commits)
    return Committer(doc, commits, SETTINGS, publish or Published(), group=group)


_NODES: dict[asyncpg.Pool, GroupCommit] = {}


def node_group(pool: asyncpg.Pool) -> GroupCommit:
    """One node's group commit, as the hub holds it: the committers of one pool share it."""
    found = _NODES.get(pool)
    if found is None:
        found = _NODES[pool] = GroupCommit(pool, SETTINGS)
    return found


async def logged(pool: asyncpg.Pool, document_id: int) -> list[tuple[int, str, int]]:
    async with pool.acquire() as conn:
        rows = await store.ops_since(conn, document_id, 0)
    return [(r.revision, r.client_key, r.seq) for r in rows]


async def db_text(pool: asyncpg.Pool, document_id: int) -> tuple[str, int]:
    async with pool.acquire() as conn:
        row = await store.document_by_id(conn, document_id)
    assert row is not None
    doc = await load(pool, row, history_limit=10)
    return doc.text, doc.revision


def op_row(revision: int, client_key: str, seq: int) -> OpRow:
    return OpRow(revision, [5, "!"], client_key, seq, None)


async def test_concurrent_documents_share_one_statement_and_commit_each_op_once(
    pool: asyncpg.Pool, lean: asyncpg.Pool
) -> None:
    rows = await documents(pool, 8)
    published = Published()
    nodes = [await committer(pool, row, commits=lean, publish=published) for row in rows]
    statements: list[str] = []

    async def wave(number: int) -> None:
        outcomes = await asyncio.gather(
            *(
                c.submit(Submission(c.doc.revision, [4 + number, "!"], "u/a", number, None))
                for c in nodes
            )
        )
        assert [o.revision for o in outcomes] == [number] * len(nodes)

    await wave(1)  # the connection prepares the statement (and asyncpg looks up its types)
    async with lean.acquire() as conn:
        conn.add_query_logger(lambda record: statements.append(record.query))
    await wave(2)
    await wave(3)
    # Every op of a wave travelled in the one statement of its group, and nothing else did:
    # no round trip per op beyond the commit.
    assert len(statements) == 2
    assert all("claimed AS" in s for s in statements)
    async with lean.acquire() as conn:
        prepared = await conn.fetchval(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%claimed AS%'"
            " AND statement NOT LIKE '%pg_prepared_statements%'"
        )
    assert prepared == 1  # prepared once on the connection, then reused

    for c in nodes:
        assert await logged(pool, c.doc.id) == [(1, "u/a", 1), (2, "u/a", 2), (3, "u/a", 3)]
        assert await db_text(pool, c.doc.id) == (c.doc.text, 3) == ("hello!!!", 3)
        assert [r.revision for r in published.rows[c.doc.id]] == [1, 2, 3]


async def test_a_group_holds_at_most_max_group_ops(
    pool: asyncpg.Pool, groups: list[set[int]]
) -> None:
    rows = await documents(pool, 5)
    group = GroupCommit(pool, CollabSettings(max_group_ops=2))
    nodes = [await committer(pool, row, group=group) for row in rows]
    outcomes = await asyncio.gather(
        *(c.submit(Submission(0, [5, "!"], "u/a", 1, None)) for c in nodes)
    )
    assert [o.revision for o in outcomes] == [1] * 5
    assert max(len(g) for g in groups) == 2
    assert set().union(*groups) == {c.doc.id for c in nodes}
    assert sum(len(g) for g in groups) == 5


async def test_many_documents_on_two_nodes_converge_each_op_once(
    pool: asyncpg.Pool, groups: list[set[int]]
) -> None:
    """Clients of many documents edit through two nodes whose groups race for revisions."""
    rows = await documents(pool, 12, "start")
    two = GroupCommit(pool, SETTINGS), GroupCommit(pool, SETTINGS)
    nodes = [[await committer(pool, row, group=g) for g in two] for row in rows]
    rng = random.Random(99)
    acked: dict[tuple[int, str, int], Outcome] = {}

    async def client(name: str, node: Committer, rounds: int) -> None:
        for seq in range(1, rounds + 1):
            base_text, base_revision = node.doc.text, node.doc.revision
            outcome = await node.submit(
                Submission(base_revision, random_edit(rng, base_text), name, seq, None)
            )
            acked[(node.doc.id, name, seq)] = outcome

    await asyncio.gather(
        *(client(f"d{d}/c{i}", pair[i % 2], 6) for d, pair in enumerate(nodes) for i in range(4))
    )
    assert max(len(g) for g in groups) > 1
    for d, (a, b) in enumerate(nodes):
        await a.doc.catch_up(pool)
        await b.doc.catch_up(pool)
        assert a.doc.revision == b.doc.revision == 24
        assert a.doc.text == b.doc.text
        assert await db_text(pool, a.doc.id) == (a.doc.text, 24)
        found = await logged(pool, a.doc.id)
        assert [r for r, _, _ in found] == list(range(1, 25))
        expected = {(f"d{d}/c{i}", seq) for i in range(4) for seq in range(1, 7)}
        assert sorted((k, s) for _, k, s in found) == sorted(expected)
        for revision, key, seq in found:
            # Every ack names the revision its op became; a client's ops keep their order.
            assert acked[(a.doc.id, key, seq)].revision == revision
        for i in range(4):
            mine = [r for r, k, _ in found if k == f"d{d}/c{i}"]
            assert mine == sorted(mine)


async def test_a_lost_revision_retries_that_document_only(
    pool: asyncpg.Pool, groups: list[set[int]]
) -> None:
    first, second, third = await documents(pool, 3)
    published = Published()
    a, b, c = [await committer(pool, row, publish=published) for row in (first, second, third)]
    # Another writer takes revision 1 of the first document behind its cache's back.
    async with pool.acquire() as conn:
        assert await store.insert_ops(conn, a.doc.id, [OpRow(1, ["> ", 5], "x/y", 1, None)])

    outcomes = await asyncio.gather(
        *(a.submit(Submission(0, [i, str(i), 5 - i], "u/a", i, None)) for i in range(1, 4)),
        b.submit(Submission(0, [5, "!"], "u/b", 1, None)),
        c.submit(Submission(0, [5, "?"], "u/c", 1, None)),
    )
    assert [o.revision for o in outcomes] == [2, 3, 4, 1, 1]
    assert groups == [{a.doc.id, b.doc.id, c.doc.id}]  # the retry went alone, under the lock
    assert a.doc.text == "> h1e2l3lo"
    assert await db_text(pool, a.doc.id) == ("> h1e2l3lo", 4)
    assert await logged(pool, a.doc.id) == [(1, "x/y", 1)] + [(i + 1, "u/a", i) for i in (1, 2, 3)]
    assert await logged(pool, b.doc.id) == [(1, "u/b", 1)]
    assert await logged(pool, c.doc.id) == [(1, "u/c", 1)]
    # The op another writer committed reached this node from the database, not the broker.
    assert [r.revision for r in published.rows[a.doc.id]] == [2, 3, 4]


class Refusal:
    """Makes every insert of ops of one document fail (a trigger), until `allow`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.name = f"refuse_{uuid.uuid4().hex[:10]}"

    async def refuse(self, document_id: int) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                f"""
                CREATE FUNCTION {self.name}() RETURNS trigger LANGUAGE plpgsql AS
                $$BEGIN RAISE EXCEPTION 'refused for the test'; END$$;
                CREATE TRIGGER {self.name} BEFORE INSERT ON collab_ops FOR EACH ROW
                WHEN (NEW.document_id = {int(document_id)}) EXECUTE FUNCTION {self.name}();
                """
            )

    async def allow(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                f"DROP TRIGGER IF EXISTS {self.name} ON collab_ops;"
                f" DROP FUNCTION IF EXISTS {self.name}();"
            )


@pytest.fixture
async def refusal(pool: asyncpg.Pool) -> AsyncIterator[Refusal]:
    found = Refusal(pool)
    yield found
    await found.allow()


async def test_a_failing_document_fails_only_its_ops_and_nothing_uncommitted_is_acked(
    pool: asyncpg.Pool, refusal: Refusal, groups: list[set[int]]
) -> None:
    first, second, third = await documents(pool, 3)
    published = Published()
    a, b, c = [await committer(pool, row, publish=published) for row in (first, second, third)]
    await refusal.refuse(b.doc.id)

    results = await asyncio.gather(
        a.submit(Submission(0, [5, "!"], "u/a", 1, None)),
        b.submit(Submission(0, [5, "!"], "u/b", 1, None)),
        b.submit(Submission(0, [5, "?"], "u/b", 2, None)),
        c.submit(Submission(0, [5, "!"], "u/c", 1, None)),
        return_exceptions=True,
    )
    assert groups == [{a.doc.id, b.doc.id, c.doc.id}]
    ok_a, failed_1, failed_2, ok_c = results
    assert isinstance(ok_a, Outcome)
    assert ok_a.revision == 1
    assert isinstance(ok_c, Outcome)
    assert ok_c.revision == 1
    for failed in (failed_1, failed_2):
        assert isinstance(failed, CollabError)
        assert failed.code == "internal_error"
    assert await logged(pool, a.doc.id) == [(1, "u/a", 1)]
    assert await logged(pool, b.doc.id) == []
    assert await logged(pool, c.doc.id) == [(1, "u/c", 1)]
    assert b.doc.revision == 0
    assert b.doc.text == "hello"
    assert b.doc.id not in published.rows

    # Once the database takes them again, the resubmits commit, once.
    await refusal.allow()
    again = await asyncio.gather(
        b.submit(Submission(0, [5, "!"], "u/b", 1, None)),
        b.submit(Submission(0, [5, "?"], "u/b", 2, None)),
        a.submit(Submission(0, [5, "!"], "u/a", 1, None)),
    )
    assert [(o.revision, o.duplicate) for o in again] == [(1, False), (2, False), (1, True)]
    assert await logged(pool, b.doc.id) == [(1, "u/b", 1), (2, "u/b", 2)]
    assert await db_text(pool, b.doc.id) == (b.doc.text, 2)


async def test_resubmits_are_deduplicated_across_groups_and_nodes(pool: asyncpg.Pool) -> None:
    first, second, third = await documents(pool, 3)
    a, b, c = [await committer(pool, row) for row in (first, second, third)]
    # Node two of the first document, loaded before anything is committed: its cache is stale.
    other = await committer(pool, first, group=GroupCommit(pool, SETTINGS))

    original, _ = await asyncio.gather(
        a.submit(Submission(0, [5, "!"], "u/me", 1, None)),
        b.submit(Submission(0, [5, "!"], "u/b", 1, None)),
    )
    # The client resubmits in a later group, alongside another document's op...
    again, _ = await asyncio.gather(
        a.submit(Submission(0, [5, "!"], "u/me", 1, None)),
        c.submit(Submission(0, [5, "!"], "u/c", 1, None)),
    )
    assert again.duplicate
    assert again.revision == original.revision == 1
    # ...and through another node that has not heard of the first copy.
    elsewhere = await other.submit(Submission(0, [5, "!"], "u/me", 1, None))
    assert elsewhere.duplicate
    assert elsewhere.revision == 1
    assert other.doc.text == a.doc.text == "hello!"
    assert await logged(pool, a.doc.id) == [(1, "u/me", 1)]


async def test_a_taken_revision_or_resubmit_key_leaves_that_document_out(
    pool: asyncpg.Pool,
) -> None:
    first, second, third = await documents(pool, 3)
    async with pool.acquire() as conn:
        assert await store.insert_ops(conn, first.id, [op_row(1, "x/y", 1)])
        assert await store.insert_ops(conn, third.id, [op_row(1, "u/old", 1)])
        written = await store.insert_ops_of_documents(
            conn,
            {
                first.id: [op_row(1, "u/a", 1), op_row(2, "u/a", 2)],  # revision 1 is taken
                second.id: [op_row(1, "u/b", 1), op_row(2, "u/b", 2)],
                third.id: [op_row(2, "u/c", 1), op_row(3, "u/old", 1)],  # an old key reused
            },
        )
    assert written == {second.id}
    assert await logged(pool, first.id) == [(1, "x/y", 1)]
    assert await logged(pool, second.id) == [(1, "u/b", 1), (2, "u/b", 2)]
    assert await logged(pool, third.id) == [(1, "u/old", 1)]


async def test_a_clash_after_the_claim_rolls_the_whole_group_back(pool: asyncpg.Pool) -> None:
    """Never half a document: a later revision taken while the group waits fails it all."""
    first, second = await documents(pool, 2)
    async with pool.acquire() as rogue, pool.acquire() as conn:
        transaction = rogue.transaction()
        await transaction.start()
        # A writer that skips the document lock, not yet committed.
        await rogue.execute(
            "INSERT INTO collab_ops (document_id, revision, op, client_key, seq)"
            " VALUES ($1, 2, '[5, \"?\"]', 'x/y', 1)",
            first.id,
        )
        group = asyncio.ensure_future(
            store.insert_ops_of_documents(
                conn,
                {
                    first.id: [op_row(1, "u/a", 1), op_row(2, "u/a", 2)],
                    second.id: [op_row(1, "u/b", 1)],
                },
            )
        )
        pid = conn.get_server_pid()

        async def waiting() -> bool:
            found = await rogue.fetchval(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid
            )
            return bool(found == "Lock")

        await wait_until(waiting, what="the group to wait for the other writer")
        await transaction.commit()
        with pytest.raises(asyncpg.UniqueViolationError):
            await group
    assert await logged(pool, first.id) == [(2, "x/y", 1)]
    assert await logged(pool, second.id) == []


async def test_groups_locking_the_same_documents_never_deadlock(pool: asyncpg.Pool) -> None:
    rows = await documents(pool, 6)
    ids = [r.id for r in rows]

    async def commit(order: list[int], key: str, revision: int) -> set[int]:
        async with pool.acquire() as conn:
            return await store.insert_ops_of_documents(
                conn, {i: [op_row(revision, key, revision)] for i in order}
            )

    for revision in range(1, 11):
        won = await asyncio.gather(commit(ids, "u/a", revision), commit(ids[::-1], "u/b", revision))
        # Each document went to exactly one of the two, whichever locked it first.
        assert won[0] | won[1] == set(ids)
        assert not won[0] & won[1]
    for document_id in ids:
        assert [r for r, _, _ in await logged(pool, document_id)] == list(range(1, 11))


async def test_a_revision_whose_row_a_snapshot_pruned_is_not_written_again(
    pool: asyncpg.Pool,
) -> None:
    # A node that fell further behind than the ops kept would otherwise write revision 2 again:
    # its first copy was pruned, so the unique (document, revision) has nothing to refuse.
    pruned, fresh = await documents(pool, 2)
    async with pool.acquire() as conn:
        for document in (pruned, fresh):
            assert await store.insert_ops(
                conn, document.id, [op_row(r, "u/early", r) for r in range(1, 11)]
            )
        await store.save_snapshot(conn, pruned.id, text="hello" + "!" * 10, revision=10, keep_ops=2)
        await conn.execute(
            "UPDATE collab_documents SET checkpoint_revision = 10 WHERE id = $1", pruned.id
        )
        await store.save_snapshot(conn, pruned.id, text="hello" + "!" * 10, revision=10, keep_ops=2)
        assert [r for r, _, _ in await logged(pool, pruned.id)] == [9, 10]

        assert not await store.insert_ops(conn, pruned.id, [op_row(2, "u/stale", 1)])
        written = await store.insert_ops_of_documents(
            conn,
            {pruned.id: [op_row(3, "u/stale", 2)], fresh.id: [op_row(11, "u/next", 1)]},
        )
        assert written == {fresh.id}
        # The next revision is still taken as before.
        assert await store.insert_ops(conn, pruned.id, [op_row(11, "u/next", 1)])
    assert [r for r, _, _ in await logged(pool, pruned.id)] == [9, 10, 11]


def _scans_of(plan: dict[str, Any], relation: str) -> list[dict[str, Any]]:
    found = [plan] if plan.get("Relation Name") == relation and "Scan" in plan["Node Type"] else []
    for child in plan.get("Plans", []):
        found += _scans_of(child, relation)
    return found


async def test_a_commit_reads_one_head_and_no_op_however_many_a_document_keeps(
    pool: asyncpg.Pool,
) -> None:
    """Each commit moves its document's head (one row) and looks each resubmit key up in its
    index: no read of the ops a document keeps."""
    first, second = await documents(pool, 2)
    async with pool.acquire() as conn:
        for document in (first, second):
            assert await store.insert_ops(
                conn, document.id, [op_row(r, "u/early", r) for r in range(1, 41)]
            )
        rows = [(first.id, op_row(41, "u/a", 1)), (second.id, op_row(41, "u/b", 1))]
        transaction = conn.transaction()
        await transaction.start()
        try:
            # The pool decodes json (store/db.py), so the plan arrives as a list.
            (plan,) = await conn.fetchval(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + store._INSERT_DOCUMENTS,
                *store.commit_arguments(
                    {d: [replace(r, op=[5, "!"], user_id=None)] for d, r in rows},
                    tokens={first.id: 1, second.id: 2},
                ),
            )
        finally:
            await transaction.rollback()  # EXPLAIN ANALYZE wrote them
    # Both heads moved, so both documents were written.
    assert plan["Plan"]["Actual Rows"] == 2
    for relation in ("collab_ops", "collab_heads"):
        scans = _scans_of(plan["Plan"], relation)
        assert scans, f"the statement reads {relation}"
        assert all(scan["Actual Rows"] <= 1 for scan in scans), [
            (s["Node Type"], s.get("Index Name"), s["Actual Rows"]) for s in scans
        ]
    assert [r for r, _, _ in await logged(pool, first.id)] == list(range(1, 41))


async def test_the_commit_pool_plans_a_group_commit_once(
    pool: asyncpg.Pool, lean: asyncpg.Pool
) -> None:
    """A prepared commit is planned once per connection, not at every execution."""
    (document,) = await documents(pool, 1)
    async with lean.acquire() as conn:
        for revision in range(1, 9):
            written = await store.insert_ops_of_documents(
                conn, {document.id: [op_row(revision, "u/a", revision)]}
            )
            assert written == {document.id}
        plans = await conn.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
            store._INSERT_DOCUMENTS,
        )
    assert plans is not None
    assert (plans["generic_plans"], plans["custom_plans"]) == (8, 0)
