"""Short-lived keys: the revocation list, rate-limit counters and single-use tickets.

A port with two implementations: Redis, shared by every API node, and an in-process one for a
single node without Redis. Both pass the same conformance tests (tests/store/test_ephemeral.py).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Collection
from typing import Protocol

import redis.asyncio as redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError


class Ephemeral(Protocol):
    async def put(self, key: str, value: str, ttl_s: float) -> None: ...

    async def exists(self, key: str) -> bool: ...

    async def exists_many(self, keys: Collection[str]) -> set[str]:
        """Which of `keys` exist, in one round trip."""
        ...

    async def take(self, key: str) -> str | None:
        """Get and delete in one step: a value can be taken once."""
        ...

    async def hit(self, key: str, window_s: int) -> tuple[int, int]:
        """Count one hit in the fixed window starting at the key's first hit.

        Returns the count so far and the whole seconds until the window resets.
        """
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class MemoryEphemeral:
    def __init__(self) -> None:
        self._values: dict[str, tuple[str, float]] = {}
        self._lock = asyncio.Lock()

    def _live(self, key: str, now: float) -> tuple[str, float] | None:
        entry = self._values.get(key)
        if entry is not None and entry[1] <= now:
            del self._values[key]
            return None
        return entry

    def _sweep(self, now: float) -> None:
        # Amortised clean-up so abandoned keys do not accumulate for ever.
        if len(self._values) > 1024 and len(self._values) % 256 == 0:
            for key in [k for k, (_, exp) in self._values.items() if exp <= now]:
                del self._values[key]

    async def put(self, key: str, value: str, ttl_s: float) -> None:
        now = time.monotonic()
        self._sweep(now)
        self._values[key] = (value, now + ttl_s)

    async def exists(self, key: str) -> bool:
        return self._live(key, time.monotonic()) is not None

    async def exists_many(self, keys: Collection[str]) -> set[str]:
        now = time.monotonic()
        return {key for key in keys if self._live(key, now) is not None}

    async def take(self, key: str) -> str | None:
        entry = self._live(key, time.monotonic())
        if entry is None:
            return None
        del self._values[key]
        return entry[0]

    async def hit(self, key: str, window_s: int) -> tuple[int, int]:
        async with self._lock:
            now = time.monotonic()
            entry = self._live(key, now)
            if entry is None:
                self._sweep(now)
                entry = ("0", now + window_s)
            count = int(entry[0]) + 1
            self._values[key] = (str(count), entry[1])
            # (start + window) - now can round to a hair over the window when no time has
            # passed: ceil would then say window + 1 seconds.
            return count, max(1, min(window_s, math.ceil(entry[1] - now)))

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._values.clear()


# Connections one client opens at most; a command waits this long for one to be free.
MAX_CONNECTIONS = 100
CONNECTION_WAIT_S = 20.0


class _ClosingPool(redis.BlockingConnectionPool):
    """A pool that leaves no connection open once closed, and in which a command waits for a
    connection when all of them are busy rather than failing. A plain pool raises "Too many
    connections" past its 100th: 1,000 people in one project, each publishing its presence
    and ops, lost hundreds of publishes that way, and with them the other API processes'
    copies of those ops.

    Closing disconnects every connection, but a command in flight then fails and its retry
    (below) connects again, and a command issued after the close connects a new one; either
    connection would come back to a pool nobody closes again and stay open until garbage
    collection. Here a connection released after the close is disconnected.
    """

    _closed = False

    async def release(self, connection: AbstractConnection) -> None:
        await super().release(connection)
        if self._closed:
            await connection.disconnect()

    async def aclose(self) -> None:
        self._closed = True
        await super().aclose()


def redis_client(url: str, *, decode_responses: bool = False) -> redis.Redis:
    """A client whose pooled connections reconnect once, at once, when Redis restarted.

    Without it every pooled connection fails its next command after a restart (a 500 on a
    WebSocket upgrade, an `internal_error` on a join) until each has been replaced; a Redis
    that is really down still fails the command at once. Closing the client closes its pool.
    """
    pool = _ClosingPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=CONNECTION_WAIT_S,
        decode_responses=decode_responses,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[ConnectionError],
    )
    return redis.Redis.from_pool(pool)


class RedisEphemeral:
    def __init__(self, url: str, *, prefix: str = "vf:") -> None:
        self._redis = redis_client(url, decode_responses=True)
        self._prefix = prefix

    async def put(self, key: str, value: str, ttl_s: float) -> None:
        await self._redis.set(self._prefix + key, value, px=max(1, int(ttl_s * 1000)))

    async def exists(self, key: str) -> bool:
        return bool(await self._redis.exists(self._prefix + key))

    async def exists_many(self, keys: Collection[str]) -> set[str]:
        ordered = list(keys)
        if not ordered:
            return set()
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in ordered:
                pipe.exists(self._prefix + key)
            found = await pipe.execute()
        return {key for key, hit in zip(ordered, found, strict=True) if hit}

    async def take(self, key: str) -> str | None:
        value = await self._redis.getdel(self._prefix + key)
        return None if value is None else str(value)

    async def hit(self, key: str, window_s: int) -> tuple[int, int]:
        full = self._prefix + key
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(full)
            pipe.expire(full, window_s, nx=True)
            pipe.ttl(full)
            count, _, ttl = await pipe.execute()
        return int(count), max(1, int(ttl))

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()


def open_ephemeral(redis_url: str | None, prefix: str = "vf:") -> Ephemeral:
    return RedisEphemeral(redis_url, prefix=prefix) if redis_url else MemoryEphemeral()
