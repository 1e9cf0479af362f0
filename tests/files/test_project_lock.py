"""The workspace lock's connection goes back to the pool whatever happens while it waits."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from files.locks import ProjectLock
from store import db
from store.locks import WORKSPACE_LOCK_CLASS, lock_workspace, workspace_key
from tests.support import wait_until


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    found = await db.create_pool(database_url, min_size=2, max_size=2)
    yield found
    await found.close()


async def _waiting_for(conn: asyncpg.Connection, project_id: uuid.UUID) -> bool:
    """Someone waits for the project's workspace lock (pg_locks: not granted)."""
    return bool(
        await conn.fetchval(
            """
            SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
            AND classid = $1 AND objid = $2
            """,
            WORKSPACE_LOCK_CLASS,
            workspace_key(project_id),
        )
    )


async def test_a_waiter_cancelled_gives_its_connection_back(
    pool: asyncpg.Pool, database_url: str
) -> None:
    project_id = uuid.uuid4()
    holder = await db.connect(database_url)  # outside the pool: the lock's other side
    try:
        await lock_workspace(holder, project_id, exclusive=True)

        async def take() -> None:
            async with ProjectLock(pool, project_id, exclusive=True):
                pass

        waiter = asyncio.get_running_loop().create_task(take())
        await wait_until(lambda: _waiting_for(holder, project_id), what="the waiter to queue")
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    finally:
        await holder.close()

    # Both connections are back: a leaked one would leave a single one free.
    async def all_idle() -> bool:
        return pool.get_idle_size() == 2

    await wait_until(all_idle, timeout=10, what="both connections back in the pool")
    async with (
        ProjectLock(pool, project_id, exclusive=True),
        ProjectLock(pool, uuid.uuid4(), exclusive=True),
    ):
        pass
