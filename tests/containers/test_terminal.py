"""The terminal WebSocket: a real tty in the container, over a real socket on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import Server
from tests.support import Account, create_project, register


def ws_url(server: Server, pid: str, query: str = "") -> str:
    return server.base_url.replace("http://", "ws://") + f"/api/v1/projects/{pid}/terminal{query}"


async def read_until(ws: ClientConnection, *needles: str, timeout: float = 10) -> str:
    """Terminal output until every needle was seen (or fail at the deadline)."""
    seen = ""
    deadline = time.monotonic() + timeout
    while not all(n in seen for n in needles):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"never saw {needles!r} in {seen!r}")
        message = await asyncio.wait_for(ws.recv(), remaining)
        if isinstance(message, bytes):
            seen += message.decode(errors="replace")
    return seen


async def next_control(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = await asyncio.wait_for(ws.recv(), max(deadline - time.monotonic(), 0.01))
        if isinstance(message, str):
            found: dict[str, Any] = json.loads(message)
            return found


class Project:
    def __init__(self, http: httpx.AsyncClient, owner: Account, pid: str) -> None:
        self.http, self.owner, self.pid = http, owner, pid
        self.base = f"/api/v1/projects/{pid}/container"


@pytest.fixture
async def project(http: httpx.AsyncClient) -> AsyncIterator[Project]:
    owner = await register(http, "term")
    pid = (await create_project(http, owner))["id"]
    found = Project(http, owner, pid)
    started = await http.post(found.base, json={}, headers=owner.headers)
    assert started.json()["status"] == "running", started.text
    yield found
    await http.post(f"{found.base}/stop", headers=owner.headers)


async def test_interactive_shell_with_resize(container_server: Server, project: Project) -> None:
    async with connect(
        ws_url(container_server, project.pid), additional_headers=project.owner.headers
    ) as ws:
        await ws.send(json.dumps({"type": "resize", "cols": 100, "rows": 30}))
        await ws.send(json.dumps({"type": "stdin", "data": "stty size; echo $((6*7))x\r"}))
        seen = await read_until(ws, "30 100", "42x")
        assert "42x" in seen
        # Binary frames are keystrokes too; the shell runs as the container's user.
        await ws.send(b"id -u; pwd\r")
        await read_until(ws, "1000", "/workspace")
        await ws.send(json.dumps({"type": "resize", "cols": 0, "rows": 5}))
        error = await next_control(ws)
        assert error["type"] == "error"
        assert error["code"] == "bad_message"
        await ws.send("not json")
        assert (await next_control(ws))["code"] == "bad_message"
        await ws.send(json.dumps({"type": "ping"}))
        assert (await next_control(ws)) == {"type": "pong"}
        await ws.send(b"exit 7\r")
        assert (await next_control(ws)) == {"type": "exit", "exit_code": 7}
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1000


async def test_ticket_auth_is_single_use(
    container_server: Server, project: Project, http: httpx.AsyncClient
) -> None:
    minted = await http.post("/api/v1/auth/ws-ticket", headers=project.owner.headers)
    ticket = minted.json()["ticket"]
    url = ws_url(container_server, project.pid, f"?ticket={ticket}")
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert (await next_control(ws)) == {"type": "pong"}
    with pytest.raises(InvalidStatus) as spent:
        async with connect(url):
            pass
    assert spent.value.response.status_code == 401


async def test_who_may_open_a_terminal(
    container_server: Server, project: Project, http: httpx.AsyncClient
) -> None:
    viewer, stranger = await register(http, "viewer"), await register(http, "stranger")
    added = await http.post(
        f"/api/v1/projects/{project.pid}/members",
        json={"email": viewer.email, "role": "viewer"},
        headers=project.owner.headers,
    )
    assert added.status_code == 201
    for account, status in ((viewer, 403), (stranger, 404)):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                ws_url(container_server, project.pid), additional_headers=account.headers
            ):
                pass
        assert refused.value.response.status_code == status
        body = json.loads(refused.value.response.body or b"{}")
        assert body["error"]["code"] == ("forbidden" if status == 403 else "not_found")
    with pytest.raises(InvalidStatus) as anonymous:
        async with connect(ws_url(container_server, project.pid)):
            pass
    assert anonymous.value.response.status_code == 401

    await http.post(f"{project.base}/stop", headers=project.owner.headers)
    with pytest.raises(InvalidStatus) as stopped:
        async with connect(
            ws_url(container_server, project.pid), additional_headers=project.owner.headers
        ):
            pass
    assert stopped.value.response.status_code == 409


async def test_stopping_the_container_closes_the_terminal(
    container_server: Server, project: Project, http: httpx.AsyncClient
) -> None:
    async with connect(
        ws_url(container_server, project.pid), additional_headers=project.owner.headers
    ) as ws:
        await ws.send(b"echo ready\r")
        await read_until(ws, "ready")
        stopped = await http.post(f"{project.base}/stop", headers=project.owner.headers)
        assert stopped.json()["status"] == "stopped"
        control = await next_control(ws, timeout=15)
        assert control["type"] == "exit"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
