"""Migrations: idempotent, and safe when two nodes run them at once."""

from __future__ import annotations

import asyncio
import uuid

from store import db
from store.migrate import available, migrate
from tests.conftest import ADMIN_DSN


async def test_migrations_apply_twice_without_harm(database_url: str) -> None:
    conn = await db.connect(database_url)
    try:
        assert await migrate(conn) == []
        applied = await conn.fetchval("SELECT count(*) FROM schema_migrations")
        assert applied == len(available())
    finally:
        await conn.close()


async def test_concurrent_migrations_do_not_race() -> None:
    url = db.with_database(ADMIN_DSN, f"vaporform_test_mig_{uuid.uuid4().hex[:10]}")
    # Two "nodes" create the database and migrate at once.
    created = await asyncio.gather(db.ensure_database(url), db.ensure_database(url))
    assert sorted(created) == [False, True]
    conns = [await db.connect(url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        names = [m.name for m in available()]
        assert sorted(results, key=len) == [[], [], names]
        rows = await conns[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == [m.version for m in available()]
    finally:
        for conn in conns:
            await conn.close()
        await db.drop_database(url)
