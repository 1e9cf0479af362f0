"""The `job` event on the project's collaboration WebSocket: every state change of an AI job
reaches an open socket of the project, in order, up to the terminal state.

The session's API server and in-process worker (offline provider, Redis broker) are enough:
an offline review succeeds on ruff's findings, an offline code generation fails with
`ai_provider_not_configured`, so one socket sees a job end each way. The client sends one
`join`: its answer proves the project's room, and so its subscription to the job channel, is
in place before the first job starts (the room subscribes after the socket is accepted).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets

from tests.ai.helpers import put_file, start_job
from tests.conftest import Server
from tests.support import Account, create_project, register, wait_until

TERMINAL = ("succeeded", "failed")


class Socket:
    """One collaboration connection that keeps every envelope it receives."""

    def __init__(self, connection: websockets.ClientConnection) -> None:
        self.connection = connection
        self.inbox: list[dict[str, Any]] = []
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for raw in self.connection:
            decoded = json.loads(raw)
            self.inbox.extend(decoded if isinstance(decoded, list) else [decoded])

    async def first(self, kind: str, what: str, **payload: Any) -> dict[str, Any]:
        """The first envelope of type `kind` whose payload has these values."""
        found: list[dict[str, Any]] = []

        async def arrived() -> bool:
            assert not self._reader.done(), f"the socket closed; received {self.inbox[-5:]}"
            found[:] = [
                m
                for m in self.inbox
                if m["type"] == kind and all(m["payload"].get(k) == v for k, v in payload.items())
            ]
            return bool(found)

        await wait_until(arrived, timeout=60, what=what)
        return found[0]

    def jobs(self, job_id: str) -> list[dict[str, Any]]:
        return [m for m in self.inbox if m["type"] == "job" and m["payload"]["job_id"] == job_id]

    async def close(self) -> None:
        await self.connection.close()
        await self._reader


@pytest.fixture
async def owner_and_project(http: httpx.AsyncClient) -> tuple[Account, str]:
    owner = await register(http, "owner")
    pid: str = (await create_project(http, owner))["id"]
    await put_file(http, owner, pid, "bad.py", "import json\n\n\ndef f():\n    return missing\n")
    return owner, pid


@pytest.fixture
async def socket(server: Server, owner_and_project: tuple[Account, str]) -> AsyncIterator[Socket]:
    owner, pid = owner_and_project
    url = server.base_url.replace("http://", "ws://") + f"/api/v1/projects/{pid}/collab"
    connection = await websockets.connect(url, additional_headers=owner.headers)
    found = Socket(connection)
    yield found
    await found.close()


async def job_events_until_done(socket: Socket, job_id: str, kind: str) -> list[str]:
    """The statuses the socket was told for one job, once it was told a terminal one."""

    async def done() -> bool:
        return any(m["payload"]["status"] in TERMINAL for m in socket.jobs(job_id))

    await wait_until(done, timeout=60, what=f"a terminal job event for {kind} job {job_id}")
    events = socket.jobs(job_id)
    for event in events:
        assert event["payload"] == {
            "job_id": job_id,
            "kind": kind,
            "status": event["payload"]["status"],
        }
        assert event["user_id"] is None, event
        assert event["session_id"] is None, event
        assert "ref" not in event, event
    return [e["payload"]["status"] for e in events]


async def test_job_events_reach_the_project_socket_in_order(
    http: httpx.AsyncClient, socket: Socket, owner_and_project: tuple[Account, str]
) -> None:
    owner, pid = owner_and_project
    await socket.connection.send(
        json.dumps({"id": "j1", "type": "join", "payload": {"path": "bad.py"}})
    )
    joined = await socket.first("joined", "the join's answer", path="bad.py")
    assert joined["ref"] == "j1"

    review = await start_job(http, owner, pid, "reviews", {})
    # A job's row is created `queued` by the API, which announces nothing; the worker announces
    # every change it makes.
    assert await job_events_until_done(socket, review, "review") == ["running", "succeeded"]

    generate = await start_job(http, owner, pid, "generate", {"prompt": "anything"})
    assert await job_events_until_done(socket, generate, "generate") == ["running", "failed"]

    # The REST status agrees with the last event.
    for job_id, status in ((review, "succeeded"), (generate, "failed")):
        found = await http.get(f"/api/v1/projects/{pid}/ai/jobs/{job_id}", headers=owner.headers)
        assert found.json()["status"] == status, found.text
    assert [m["payload"]["job_id"] for m in socket.inbox if m["type"] == "job"] == [
        review,
        review,
        generate,
        generate,
    ]
