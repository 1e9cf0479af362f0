"""The file service's advisory locks exclude what they must and nothing more."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import asyncpg
import pytest

from store import db, locks
from store.db import Conn
from tests.support import wait_until


@pytest.fixture
async def conns(database_url: str) -> AsyncIterator[list[asyncpg.Connection]]:
    opened = [await db.connect(database_url) for _ in range(3)]
    yield opened
    for conn in opened:
        if not conn.is_closed():
            await conn.close()


async def _waiting(observer: Conn, waiter: Conn) -> bool:
    """Whether `waiter` is blocked on an advisory lock it has not been granted."""
    pid = waiter.get_server_pid()
    return bool(
        await observer.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND locktype = 'advisory' "
            "AND NOT granted)",
            pid,
        )
    )


async def _blocked_until(
    observer: Conn, waiter: Conn, pending: Coroutine[Any, Any, None]
) -> asyncio.Task[None]:
    """`pending` (a lock call on `waiter`) started, once `waiter` waits for the lock."""
    task = asyncio.create_task(pending)
    await wait_until(lambda: _waiting(observer, waiter), what="the lock to be waited on")
    assert not task.done()
    return task


async def test_workspace_writers_share_and_an_import_waits_for_them(
    conns: list[asyncpg.Connection],
) -> None:
    first, second, importer = conns
    project = uuid.uuid4()
    await locks.lock_workspace(first, project, exclusive=False)
    await locks.lock_workspace(second, project, exclusive=False)  # writers share it
    exclusive = await _blocked_until(
        first, importer, locks.lock_workspace(importer, project, exclusive=True)
    )
    # Another project's lock is a different key.
    await locks.lock_workspace(second, uuid.uuid4(), exclusive=True)
    await locks.unlock_workspace(first, project, exclusive=False)
    assert not exclusive.done()
    assert await _waiting(first, importer)
    await locks.unlock_workspace(second, project, exclusive=False)
    await asyncio.wait_for(exclusive, timeout=10)
    await locks.unlock_workspace(importer, project, exclusive=True)


async def test_gc_waits_for_writers_and_backups(conns: list[asyncpg.Connection]) -> None:
    writer, backup, collector = conns
    await locks.share_gc_lock_for_session(backup)
    async with writer.transaction():
        await locks.share_gc_lock(writer)
        collecting = collector.transaction()
        await collecting.start()
        gc = await _blocked_until(writer, collector, locks.take_gc_lock(collector))
    # The writer's transaction ended; the backup's session still holds the lock.
    assert not gc.done()
    assert await _waiting(writer, collector)
    await backup.close()  # as a finished backup does
    await asyncio.wait_for(gc, timeout=10)
    await collecting.commit()
