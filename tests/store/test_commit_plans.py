"""The commit path's statements look a resubmit key up in its index, whatever the planner
knows of the table.

A prepared statement keeps the generic plan PostgreSQL made once; made while `collab_ops` was
new and had no statistics, a plain join planned a hash over a scan of every op, paid on each
commit for as long as the connection lived. The plans are read as PostgreSQL makes them for a
table in that state: a fresh database, never vacuumed nor analysed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from store import collab as store
from store import db
from tests.conftest import fresh_database

_STATEMENTS = {
    "insert_ops_of_documents": (
        store._INSERT_DOCUMENTS,
        ["text", "int[]"] + ["bigint[]"] * 5,
    ),
    "find_resubmits": (store._FIND_RESUBMITS, ["bigint", "text[]", "bigint[]"]),
}


@pytest.fixture(scope="module")
async def fresh_url(run_id: str) -> AsyncIterator[str]:
    async with fresh_database(f"vaporform_test_{run_id}_plans") as url:
        yield url


@pytest.fixture
async def fresh_conn(fresh_url: str) -> AsyncIterator[asyncpg.Connection]:
    # A connection per test: its prepared statement and plan_cache_mode stay its own.
    conn = await db.connect(fresh_url)
    try:
        yield conn
    finally:
        await conn.close()


def _reads_of_ops(node: dict[str, Any]) -> list[str]:
    """The node types of every plan node that reads `collab_ops` or `collab_heads` (writes
    left out)."""
    found = []
    read = node.get("Relation Name") in ("collab_ops", "collab_heads")
    if read and node["Node Type"] != "ModifyTable":
        found.append(node["Node Type"])
    for child in node.get("Plans", []):
        found += _reads_of_ops(child)
    return found


@pytest.mark.parametrize("name", sorted(_STATEMENTS))
async def test_the_generic_plan_probes_the_index(fresh_conn: asyncpg.Connection, name: str) -> None:
    sql, types = _STATEMENTS[name]
    await fresh_conn.execute(f"PREPARE probe ({', '.join(types)}) AS {sql}")
    await fresh_conn.execute("SET plan_cache_mode = force_generic_plan")
    nulls = ", ".join(f"NULL::{t}" for t in types)
    # EXPLAIN's json comes back decoded (the connection's codec).
    explained = await fresh_conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE probe ({nulls})")
    reads = _reads_of_ops(explained[0]["Plan"])
    assert reads, "the statement reads collab_ops"
    assert set(reads) <= {"Index Scan", "Index Only Scan"}, reads
