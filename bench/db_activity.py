"""What reached PostgreSQL while a bench measured: ops committed and the transactions behind them.

`reading` at the start and at the end of the measured window, then `figures` of the two:

* ops committed per second, from every document's head revision (exact, whatever snapshots
  pruned meanwhile);
* the transactions that carried them per second: distinct `xmin` of the `collab_ops` rows
  written in the window (a snapshot may have pruned some of them by the end: then
  `db_ops_pruned` says how many rows that count could not see, and ops per commit is taken
  over the rows left);
* every transaction committed in the database per second (`pg_stat_database.xact_commit`,
  which a backend reports up to a second late, and which counts more than commits of ops).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class Reading:
    at: datetime  # the database's clock
    xact_commit: int
    heads: dict[int, int]  # document id -> latest revision


async def reading(database_url: str) -> Reading:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT now() AS at, xact_commit FROM pg_stat_database"
            " WHERE datname = current_database()"
        )
        heads = await conn.fetch(
            "SELECT document_id, max(revision) AS head FROM collab_ops GROUP BY document_id"
        )
    finally:
        await conn.close()
    assert row is not None
    return Reading(
        row["at"], int(row["xact_commit"]), {r["document_id"]: int(r["head"]) for r in heads}
    )


async def figures(database_url: str, began: Reading, ended: Reading) -> dict[str, Any]:
    """What reached PostgreSQL between two readings."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS rows, count(DISTINCT xmin::text) AS commits FROM collab_ops"
            " WHERE created_at >= $1 AND created_at < $2",
            began.at,
            ended.at,
        )
    finally:
        await conn.close()
    assert row is not None
    seconds = (ended.at - began.at).total_seconds()
    ops = sum(head - began.heads.get(doc, 0) for doc, head in ended.heads.items())
    rows, commits = int(row["rows"]), int(row["commits"])
    return {
        "db_ops_per_s": round(ops / seconds, 1),
        "db_op_commits_per_s": round(commits / seconds, 1),
        "db_ops_per_commit": round(rows / max(1, commits), 2),
        "db_ops_pruned": max(0, ops - rows),
        "db_xact_commit_per_s": round((ended.xact_commit - began.xact_commit) / seconds, 1),
    }
