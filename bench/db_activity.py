"""What reached PostgreSQL while a bench measured: ops committed and the transactions behind them.

`database_counters` at the start and at the end of the measured window, then
`database_figures` of the two: ops committed per second, the transactions that carried them
per second (distinct `xmin` of the `collab_ops` rows written in the window), and every
transaction committed in the database per second (`pg_stat_database.xact_commit`, which a
backend reports up to a second late).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg


async def database_counters(database_url: str) -> tuple[datetime, int]:
    """The database's clock and its count of committed transactions."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT now() AS at, xact_commit FROM pg_stat_database"
            " WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    assert row is not None
    return row["at"], int(row["xact_commit"])


async def database_figures(
    database_url: str, began: tuple[datetime, int], ended: tuple[datetime, int]
) -> dict[str, Any]:
    """What reached PostgreSQL between two readings of `database_counters`."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS ops, count(DISTINCT xmin::text) AS commits FROM collab_ops"
            " WHERE created_at >= $1 AND created_at < $2",
            began[0],
            ended[0],
        )
    finally:
        await conn.close()
    assert row is not None
    seconds = (ended[0] - began[0]).total_seconds()
    ops, commits = int(row["ops"]), int(row["commits"])
    return {
        "db_ops_per_s": round(ops / seconds, 1),
        "db_op_commits_per_s": round(commits / seconds, 1),
        "db_ops_per_commit": round(ops / max(1, commits), 2),
        "db_xact_commit_per_s": round((ended[1] - began[1]) / seconds, 1),
    }
