"""The pool gives connections back without a round trip, and still never hands on an open
transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from asyncpg.connection import LoggedQuery

from store import db


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    # One connection, so that every acquire gets the same one back.
    found = await db.create_pool(database_url, min_size=1, max_size=1)
    yield found
    await found.close()


async def test_a_release_sends_nothing_to_the_database(pool: asyncpg.Pool) -> None:
    sent: list[str] = []

    def logged(query: LoggedQuery) -> None:
        sent.append(query.query)

    async with pool.acquire() as conn:
        conn.add_query_logger(logged)
        assert await conn.fetchval("SELECT 1") == 1
    # asyncpg's default reset would have sent "SELECT pg_advisory_unlock_all(); CLOSE ALL; ..."
    assert sent == ["SELECT 1"]
    async with pool.acquire() as conn:
        conn.remove_query_logger(logged)


async def test_a_transaction_left_open_is_rolled_back(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("CREATE TEMP TABLE IF NOT EXISTS left_open (n int)")
        await conn.execute("BEGIN")
        await conn.execute("INSERT INTO left_open VALUES (1)")
        pid = conn.get_server_pid()
    async with pool.acquire() as conn:
        assert conn.get_server_pid() == pid
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT count(*) FROM left_open") == 0
