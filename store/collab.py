"""Queries on `collab_documents`, `collab_heads` and `collab_ops` (the chat's are in
store/chat.py).

A document's ops are committed by moving its head (`collab_heads`) from the revision they
were prepared on to their last one, in the statement that writes them: the answer is yes
(every row written) or no (nothing written). The ops of several documents can go in one
statement (`insert_ops_of_documents`), where each document gets its own answer.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from store.db import Conn


@dataclass(frozen=True, slots=True)
class Document:
    id: int
    project_id: UUID
    path: str
    revision: int
    base_version: int
    snapshot: str
    snapshot_revision: int
    checkpoint_revision: int
    file_version: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class OpRow:
    revision: int
    op: list[Any]
    client_key: str
    seq: int
    user_id: UUID | None


_DOC = """
    id, project_id, path, revision, base_version, snapshot, snapshot_revision,
    checkpoint_revision, file_version, updated_at
"""


class LeanConnection(asyncpg.Connection):
    """A connection whose return to the pool costs no round trip.

    asyncpg resets every connection it takes back (``RESET ALL``, ``UNLISTEN *``, unlocking
    advisory locks): one more round trip per commit. The queries of this module set no session
    state, so a pool of these, used only for them, can skip it (an open transaction is still
    rolled back).
    """

    def get_reset_query(self) -> str:
        return ""


async def create_lean_pool(dsn: str, *, max_size: int) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=max_size,
        connection_class=LeanConnection,
        command_timeout=30,
        # Every statement here is prepared once per connection and looks rows up by key, so
        # one generic plan serves all its executions. PostgreSQL would otherwise plan a group
        # commit afresh each time (about 1 ms of a 1.8 ms single-op commit; 0.9 ms without).
        server_settings={"plan_cache_mode": "force_generic_plan"},
    )
    assert pool is not None
    return pool


# Advisory lock keys: (class, key) pairs, "vc" for collaboration; the document id folded into
# an int4 (a rare shared key only serialises two documents' commits).
LOCK_CLASS = 0x7663
_LOCK_KEY = "($1::bigint % 2147483647)::int"


def _doc(row: asyncpg.Record | None) -> Document | None:
    return None if row is None else Document(**dict(row))


async def get_document(conn: Conn, project_id: UUID, path: str) -> Document | None:
    row = await conn.fetchrow(
        f"SELECT {_DOC} FROM collab_documents WHERE project_id = $1 AND path = $2",
        project_id,
        path,
    )
    return _doc(row)


async def document_by_id(
    conn: Conn, document_id: int, *, for_update: bool = False
) -> Document | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT {_DOC} FROM collab_documents WHERE id = $1{lock}", document_id
    )
    return _doc(row)


async def create_document(
    conn: Conn, project_id: UUID, path: str, *, text: str, file_version: int
) -> Document:
    """The document at revision 0 holding `text`; the existing one if another node won."""
    await conn.execute(
        """
        INSERT INTO collab_documents (project_id, path, base_version, snapshot, file_version)
        VALUES ($1, $2, $3, $4, $3)
        ON CONFLICT (project_id, path) DO NOTHING
        """,
        project_id,
        path,
        file_version,
        text,
    )
    found = await get_document(conn, project_id, path)
    assert found is not None
    return found


async def ops_since(conn: Conn, document_id: int, revision: int) -> list[OpRow]:
    """Every op committed after `revision`, in order."""
    rows = await conn.fetch(
        """
        SELECT revision, op::text AS op, client_key, seq, user_id FROM collab_ops
        WHERE document_id = $1 AND revision > $2 ORDER BY revision
        """,
        document_id,
        revision,
    )
    # Decoded here so these queries need no jsonb codec on the connection (see
    # create_lean_pool).
    return [
        OpRow(r["revision"], json.loads(r["op"]), r["client_key"], r["seq"], r["user_id"])
        for r in rows
    ]


async def oldest_revision(conn: Conn, document_id: int) -> int | None:
    """The oldest op still retained, None when the log is empty."""
    value = await conn.fetchval(
        "SELECT min(revision) FROM collab_ops WHERE document_id = $1", document_id
    )
    return None if value is None else int(value)


def _lookup_key(document: str, key: str, seq: str) -> str:
    """SQL: the op of `document` with resubmit key (`key`, `seq`), as a LATERAL join, one probe
    of the unique index per key."""
    # As a plain join PostgreSQL may plan a hash join over every op of the table; a prepared
    # statement keeps the plan it made while the table was small, and without fresh statistics
    # (autovacuum off, or not yet run) that plan read the whole table on every commit: 0.9 ->
    # 12 ms a commit after 80,000 ops (bench/collab_results.md).
    return f"""LATERAL (
            SELECT o.revision FROM collab_ops o
            WHERE o.document_id = {document} AND o.client_key = {key} AND o.seq = {seq} LIMIT 1
        ) AS o"""


def new_token() -> int:
    """A commit's token: what a commit sent after it, before it lands, names (see
    insert_ops_of_documents). Random, so two nodes never share one."""
    # Unique, not secret: the module's generator (seeded from the OS, and again in a forked
    # child). `secrets` asks the kernel each time, a system call per batch (1.4% of the API's
    # samples at 50 files x 4 writers).
    return random.getrandbits(63)


async def insert_ops(
    conn: Conn,
    document_id: int,
    rows: Sequence[OpRow],
    *,
    token: int | None = None,
    after: int | None = None,
) -> bool:
    """Commit `rows` (consecutive revisions) all together, or none of them.

    False when the head moved or a resubmit key is taken: the caller reloads and retries.
    """
    commit = {document_id: rows}
    tokens = None if token is None else {document_id: token}
    afters = None if after is None else {document_id: after}
    try:
        # Within a caller's transaction, a savepoint: a clash must leave it usable.
        async with conn.transaction() if conn.is_in_transaction() else contextlib.nullcontext():
            written = await _commit(conn, commit, tokens=tokens, after=afters)
    except asyncpg.UniqueViolationError:
        return False  # a writer that came between the statement's snapshot and its insert
    return document_id in written


# One statement, so one round trip and one transaction, for the ops of many documents. The
# locks come before any row (the one-time filter), in key order so two groups cannot deadlock.
# Each document's head (collab_heads) moves from the revision before its first row to its
# last, and only then are its rows written; a head that is elsewhere leaves the document out,
# and so does a resubmit key of an older op (`reused`). A clash left after all that (a writer
# that skipped the lock) raises, rolling the whole group back: never half a document.
#
# A batch sent before the one it follows has landed names that one's token (`after`). Its
# statement's snapshot is older than that commit, so the head is matched in the UPDATE's
# SET, not its WHERE: an UPDATE that waited for a row lock evaluates SET on the row as the
# other transaction left it (the WHERE, read in the snapshot, admits both states). A head
# left elsewhere is written back unchanged, and the document is left out.
_MOVES = "x.revision = h.first - 1 AND (h.after IS NULL OR x.token = h.after)"
_INSERT_DOCUMENTS = f"""
    WITH locked AS MATERIALIZED (
        SELECT count(*) AS n
        FROM unnest($2::int[]) AS k(key), LATERAL pg_advisory_xact_lock({LOCK_CLASS}, k.key)
    ),
    input AS (
        SELECT d, r, o, c, s, u
        FROM json_to_recordset($1::text::json)
             AS t(d bigint, r bigint, o jsonb, c text, s bigint, u uuid)
    ),
    heads AS (
        SELECT d, first, last, after, token
        FROM unnest($3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[])
             AS h(d, first, last, after, token)
    ),
    reused AS (
        SELECT DISTINCT i.d FROM input i, {_lookup_key("i.d", "i.c", "i.s")}
    ),
    claimed AS (
        UPDATE collab_heads x
        SET revision = CASE WHEN {_MOVES} THEN h.last ELSE x.revision END,
            token = CASE WHEN {_MOVES} THEN h.token ELSE x.token END
        FROM heads h
        WHERE x.document_id = h.d AND x.revision < h.first AND (SELECT n FROM locked) >= 0
          AND h.d NOT IN (SELECT d FROM reused)
        RETURNING x.document_id, x.token = h.token AS moved
    ),
    written AS (
        INSERT INTO collab_ops (document_id, revision, op, client_key, seq, user_id)
        SELECT d, r, o, c, s, u FROM input
        WHERE d IN (SELECT document_id FROM claimed WHERE moved)
    )
    SELECT document_id FROM claimed WHERE moved
"""


async def insert_ops_of_documents(
    conn: Conn,
    documents: Mapping[int, Sequence[OpRow]],
    *,
    tokens: Mapping[int, int] | None = None,
    after: Mapping[int, int] | None = None,
) -> set[int]:
    """Commit the ops of several documents (each consecutive revisions) in one statement.

    The ids of the documents whose rows were all written; the others' heads had moved (or a
    resubmit key was taken) and got nothing written (the caller reloads and retries). A
    document's head takes its token from `tokens` (a new one when absent); a document in
    `after` is written only over the head that token left. Raises when the statement fails:
    then nothing was written, unless the failure came with the commit.
    """
    return await _commit(conn, documents, tokens=tokens, after=after)


async def _commit(
    conn: Conn,
    documents: Mapping[int, Sequence[OpRow]],
    *,
    tokens: Mapping[int, int] | None,
    after: Mapping[int, int] | None,
) -> set[int]:
    written = await conn.fetch(_INSERT_DOCUMENTS, *commit_arguments(documents, tokens, after))
    return {int(r["document_id"]) for r in written}


def commit_arguments(
    documents: Mapping[int, Sequence[OpRow]],
    tokens: Mapping[int, int] | None = None,
    after: Mapping[int, int] | None = None,
) -> tuple[object, ...]:
    """The parameters of _INSERT_DOCUMENTS: the rows, the lock keys and the heads."""
    tokens, after = tokens or {}, after or {}
    # The rows as one JSON text (typed text: the API's pool encodes json itself), not six
    # arrays: asyncpg checks each array element against three abstract base classes, ~250
    # checks for 14 documents x 3 ops (client CPU of that call 211-243 -> 131-188 us). The
    # heads stay arrays: the planner takes a function for 100 rows, and with JSON heads the
    # plan made once per connection on a small table scanned collab_heads (test_group_commit).
    rows = [
        {"d": d, "r": r.revision, "o": r.op, "c": r.client_key, "s": r.seq, "u": r.user_id}
        for d, batch in documents.items()
        for r in batch
    ]
    heads = [(d, batch[0].revision, batch[-1].revision) for d, batch in documents.items() if batch]
    return (
        _json(rows),
        sorted({_lock_key(d) for d in documents}),
        [d for d, _, _ in heads],
        [first for _, first, _ in heads],
        [last for _, _, last in heads],
        [after.get(d) for d, _, _ in heads],
        [tokens.get(d) or new_token() for d, _, _ in heads],
    )


def _lock_key(document_id: int) -> int:
    """The document's advisory key within LOCK_CLASS, as _LOCK_KEY computes it."""
    return document_id % 2147483647


async def lock_document(conn: Conn, document_id: int) -> None:
    """Hold the document's commit lock until the current transaction ends.

    Every insert of ops takes it too, so whoever holds it can read the latest revision and
    write the next one without anybody taking it in between.
    """
    await conn.execute(f"SELECT pg_advisory_xact_lock({LOCK_CLASS}, {_LOCK_KEY})", document_id)


def _json(value: Any) -> str:
    # orjson writes the same compact text in a tenth of the time (user ids as their text);
    # what it refuses (a lone surrogate, which the op checks never let through) goes the slow
    # way and fails where it always did.
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


_FIND_RESUBMITS = f"""
    SELECT k.c, k.s, o.revision FROM unnest($2::text[], $3::bigint[]) AS k(c, s),
    {_lookup_key("$1", "k.c", "k.s")}
"""


async def find_resubmits(
    conn: Conn, document_id: int, keys: list[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """For (client_key, seq) pairs already committed: the revision each became."""
    rows = await conn.fetch(
        _FIND_RESUBMITS,
        document_id,
        [k for k, _ in keys],
        [s for _, s in keys],
    )
    return {(r["c"], r["s"]): int(r["revision"]) for r in rows}


async def save_snapshot(
    conn: Conn, document_id: int, *, text: str, revision: int, keep_ops: int
) -> None:
    """Store the text at `revision` and drop ops no longer needed.

    Ops after the last checkpoint are always kept: they turn an external file change made
    since that checkpoint into an op (see collab/checkpoint.py).
    """
    async with conn.transaction():
        await conn.execute(
            """
            UPDATE collab_documents
            SET snapshot = $2, snapshot_revision = $3, revision = greatest(revision, $3),
                updated_at = now()
            WHERE id = $1 AND snapshot_revision < $3
            """,
            document_id,
            text,
            revision,
        )
        await conn.execute(
            """
            DELETE FROM collab_ops o USING collab_documents d
            WHERE d.id = $1 AND o.document_id = $1
              AND o.revision <= least(d.snapshot_revision - $2, d.checkpoint_revision)
            """,
            document_id,
            keep_ops,
        )


async def record_checkpoint(
    conn: Conn, document_id: int, *, revision: int, file_version: int
) -> None:
    await conn.execute(
        """
        UPDATE collab_documents
        SET checkpoint_revision = $2, file_version = $3, revision = greatest(revision, $2),
            updated_at = now()
        WHERE id = $1 AND checkpoint_revision <= $2
        """,
        document_id,
        revision,
        file_version,
    )
