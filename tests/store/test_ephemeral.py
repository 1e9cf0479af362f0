"""One conformance suite for both ephemeral stores (in-process and Redis)."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from collab.broker import RedisBroker
from store.ephemeral import (
    MAX_CONNECTIONS,
    Ephemeral,
    MemoryEphemeral,
    RedisEphemeral,
    redis_client,
)
from tests.conftest import REDIS_URL, free_port
from tests.support import wait_until


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Ephemeral]:
    found: Ephemeral
    if request.param == "memory":
        found = MemoryEphemeral()
    else:
        found = RedisEphemeral(REDIS_URL, prefix=f"vf-test-{uuid.uuid4().hex}:")
    yield found
    await found.close()


async def test_put_exists_and_expiry(store: Ephemeral) -> None:
    assert not await store.exists("a")
    await store.put("a", "1", 0.2)
    assert await store.exists("a")

    async def gone() -> bool:
        return not await store.exists("a")

    await wait_until(gone, timeout=5, what="the key to expire")


async def test_exists_many_answers_in_one_call(store: Ephemeral) -> None:
    assert await store.exists_many([]) == set()
    await store.put("m1", "1", 30)
    await store.put("m2", "1", 30)
    await store.put("brief", "1", 0.1)
    assert await store.exists_many(["m1", "nope", "m2"]) == {"m1", "m2"}

    async def expired() -> bool:
        return await store.exists_many(["m1", "brief"]) == {"m1"}

    await wait_until(expired, timeout=5, what="the short key to expire")


async def test_take_is_single_use(store: Ephemeral) -> None:
    await store.put("t", "value", 30)
    results = await asyncio.gather(*(store.take("t") for _ in range(10)))
    assert sorted(r for r in results if r is not None) == ["value"]
    assert await store.take("t") is None
    assert await store.take("never") is None


async def test_hit_counts_within_a_window(store: Ephemeral) -> None:
    counts = await asyncio.gather(*(store.hit("w", 60) for _ in range(20)))
    assert sorted(c for c, _ in counts) == list(range(1, 21))
    assert all(1 <= reset <= 60 for _, reset in counts)
    count, _ = await store.hit("other", 60)
    assert count == 1


async def test_hit_window_resets(store: Ephemeral) -> None:
    await store.hit("short", 1)
    await store.hit("short", 1)

    async def reset() -> bool:
        count, _ = await store.hit("short", 1)
        return count == 1

    await wait_until(reset, timeout=5, what="the window to reset")


async def test_ping(store: Ephemeral) -> None:
    await store.ping()


def _redis_server(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def test_pooled_connections_survive_a_redis_restart() -> None:
    """Every pooled connection is dead after a restart; the next command must still work."""
    port = free_port()
    server = _redis_server(port)
    url = f"redis://127.0.0.1:{port}/0"
    store = RedisEphemeral(url, prefix="restart:")
    broker = RedisBroker(url, prefix="restart:")
    try:

        async def up() -> bool:
            try:
                await store.ping()
            except Exception:
                return False
            return True

        await wait_until(up, timeout=10, what="our redis-server")
        # Several connections in the pool, all alive.
        await asyncio.gather(*(store.put(f"k{i}", "1", 30) for i in range(5)))
        await broker.publish("c", b"before")
        server.terminate()
        server.wait(10)
        server = _redis_server(port)
        await wait_until(up, timeout=10, what="the restarted redis-server")
        await asyncio.gather(*(store.put(f"k{i}", "2", 30) for i in range(5)))
        assert await store.take("k0") == "2"
        await broker.publish("c", b"after")
    finally:
        await broker.close()
        await store.close()
        server.terminate()
        server.wait(10)


async def test_a_closed_client_leaves_no_connection_open() -> None:
    """A command in flight when the client closes is retried on a fresh connection, and one
    issued after the close makes a new one: neither may stay open behind a closed pool."""
    name = f"vf-test-{uuid.uuid4().hex[:12]}"
    client = redis_client(f"{REDIS_URL}?client_name={name}")
    observer = redis_client(REDIS_URL, decode_responses=True)
    try:

        async def connections() -> int:
            listed = await observer.client_list()
            return sum(1 for c in listed if c.get("name") == name)

        await client.ping()
        blocked = asyncio.ensure_future(client.blpop([f"{name}:nothing"], timeout=1))
        await wait_until(lambda: _blocked(observer, name), timeout=10, what="the BLPOP")
        await client.aclose()
        assert await blocked is None  # failed over to a new connection and ran to its end
        assert await client.ping()
        await wait_until(
            lambda: _none(connections), timeout=10, what="every connection of the closed client"
        )
    finally:
        await client.aclose()
        await observer.aclose()


async def _blocked(observer: Redis, name: str) -> bool:
    listed = await observer.client_list()
    return any(c.get("name") == name and c.get("cmd") == "blpop" for c in listed)


async def _none(count: Callable[[], Awaitable[int]]) -> bool:
    return await count() == 0


async def test_commands_beyond_the_pool_wait_for_a_connection() -> None:
    """More commands at once than the pool has connections: they queue for one, none fails
    (1,000 people in one project publish at once)."""
    client = redis_client(REDIS_URL)
    channel = f"vf-test-{uuid.uuid4().hex[:12]}"
    try:
        results = await asyncio.gather(
            *(client.publish(channel, b"m") for _ in range(MAX_CONNECTIONS * 4)),
            return_exceptions=True,
        )
        assert [r for r in results if isinstance(r, BaseException)] == []
    finally:
        await client.aclose()
