"""Fixtures of the collaboration tests: a pool, users and projects in the database, and a
WebSocket client that keeps everything it receives."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import asyncpg
import httpx
import pytest
import websockets

from collab.settings import CollabSettings
from store import db, projects, users
from tests.conftest import Server, api_client, serving
from vaporform.config import Config


@pytest.fixture(scope="session")
async def pool(config: Config) -> AsyncIterator[asyncpg.Pool]:
    found = await db.create_pool(config.database_url, min_size=1, max_size=10)
    yield found
    await found.close()


async def make_project(pool: asyncpg.Pool) -> uuid.UUID:
    async with pool.acquire() as conn:
        user = await users.create(
            conn, email=f"c-{uuid.uuid4().hex[:10]}@example.com", name="C", password_hash="x"
        )
        assert user is not None
        project = await projects.create(
            conn, owner_id=user.id, name="collab", description="", config={}
        )
    return project.id


Message = dict[str, Any]


class WSClient:
    """One collaboration connection; `wait_for` polls what arrived, with a deadline."""

    _ids = itertools.count(1)

    def __init__(self, connection: websockets.ClientConnection) -> None:
        self.connection = connection
        self.inbox: list[Message] = []
        self.closed: websockets.ConnectionClosed | None = None
        self.frames = 0
        self._arrived = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, server: Server, project_id: str, token: str, **query: str) -> WSClient:
        url = server.base_url.replace("http://", "ws://") + f"/api/v1/projects/{project_id}/collab"
        if query:
            url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return cls(await websockets.connect(url, additional_headers=headers, max_size=2**24))

    async def _read(self) -> None:
        try:
            async for raw in self.connection:
                decoded = json.loads(raw)
                # With ?batch=1 a frame may hold several envelopes.
                self.inbox.extend(decoded if isinstance(decoded, list) else [decoded])
                self.frames += 1
                self._arrived.set()
        except websockets.ConnectionClosed as exc:
            self.closed = exc
        self.closed = self.closed or websockets.ConnectionClosedOK(None, None)
        self._arrived.set()

    async def send(self, kind: str, payload: dict[str, Any] | None = None) -> str:
        ref = f"m{next(self._ids)}"
        await self.connection.send(json.dumps({"id": ref, "type": kind, "payload": payload or {}}))
        return ref

    async def send_raw(self, raw: str | bytes) -> None:
        await self.connection.send(raw)

    async def wait_for(
        self, predicate: Callable[[Message], bool], *, timeout: float = 10, what: str = ""
    ) -> Message:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for message in self.inbox[seen:]:
                if predicate(message):
                    return message
            seen = len(self.inbox)
            left = deadline - time.monotonic()
            if left <= 0 or (self.closed is not None and seen == len(self.inbox)):
                raise AssertionError(
                    f"no message {what or predicate} within {timeout} s; "
                    f"closed={self.closed!r}; last: {self.inbox[-5:]}"
                )
            self._arrived.clear()
            if seen == len(self.inbox):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), left)

    async def reply(self, ref: str, *, timeout: float = 10) -> Message:
        return await self.wait_for(
            lambda m: m.get("ref") == ref, timeout=timeout, what=f"ref {ref}"
        )

    async def join(self, path: str, **extra: Any) -> Message:
        found = await self.reply(await self.send("join", {"path": path, **extra}))
        assert found["type"] == "joined", found
        return found

    async def close(self) -> None:
        await self.connection.close()
        await self._reader


FAST = CollabSettings(checkpoint_idle_s=0.5, checkpoint_every_ops=50, op_rate=500, op_burst=500)


@pytest.fixture(scope="module")
async def nodes(config: Config, worker: None) -> AsyncIterator[tuple[Server, Server]]:
    """Two API servers (two apps, two brokers) on one database and one Redis."""
    fast = replace(config, collab=FAST)
    async with serving(fast) as a, serving(fast) as b:
        yield a, b


@pytest.fixture
async def api(nodes: tuple[Server, Server]) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(nodes[0]) as client:
        yield client
