"""An open terminal closes (code 4003) within 2 s once its user may no longer have it: made
viewer, removed, logged out of the token it was opened with, or the project deleted; with the
change made on the terminal's node or on another one (sharing PostgreSQL and Redis).

The nodes re-check open sockets only every minute, so only the announced change can close a
terminal in time (the periodic re-check is tested in tests/collab/test_access.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import docker
import docker.errors
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import Server, api_client, serving
from tests.support import Account, create_project, register
from vaporform.config import Config

LIMIT_S = 2.0
REVOKED = 4003


@pytest.fixture(scope="module")
async def pair(
    container_config: Config, worker: None, docker_worker: None, agent: str
) -> AsyncIterator[tuple[Server, Server]]:
    events_only = replace(container_config, access_recheck_s=60.0)
    async with serving(events_only) as a, serving(events_only) as b:
        yield a, b


@dataclass
class Running:
    terminal_node: Server
    rest: httpx.AsyncClient  # on the node where access is changed
    owner: Account
    pid: str


@pytest.fixture(params=["one node", "two nodes"])
async def running(
    request: pytest.FixtureRequest,
    pair: tuple[Server, Server],
    docker_client: docker.DockerClient,
) -> AsyncIterator[Running]:
    """A project whose container runs; terminals open on the first node."""
    change_node = pair[0] if request.param == "one node" else pair[1]
    async with api_client(change_node, timeout=60) as rest:
        owner = await register(rest, "term")
        pid = (await create_project(rest, owner))["id"]
        base = f"/api/v1/projects/{pid}/container"
        started = await rest.post(base, json={}, headers=owner.headers)
        assert started.json()["status"] == "running", started.text
        container_id = (await rest.get(base, headers=owner.headers)).json()["container_id"]
        yield Running(pair[0], rest, owner, pid)
        stopped = await rest.post(f"{base}/stop", headers=owner.headers)
        if stopped.status_code != 202:
            # The test logged out or deleted the project: its container is ours to remove.
            with contextlib.suppress(docker.errors.NotFound):
                docker_client.containers.get(container_id).remove(force=True)


async def open_terminal(
    running: Running, headers: dict[str, str] | None = None, ticket: str | None = None
) -> ClientConnection:
    url = running.terminal_node.base_url.replace("http://", "ws://")
    url += f"/api/v1/projects/{running.pid}/terminal"
    if ticket is not None:
        url += f"?ticket={ticket}"
    ws = await connect(url, additional_headers=headers or {})
    await answers(ws)
    return ws


async def answers(ws: ClientConnection, timeout: float = 10) -> None:
    """The shell runs a command and its output comes back."""
    await ws.send(b"echo $((20+22))ok\r")
    seen = ""
    deadline = time.monotonic() + timeout
    while "42ok" not in seen:
        message = await asyncio.wait_for(ws.recv(), max(deadline - time.monotonic(), 0.01))
        if isinstance(message, bytes):
            seen += message.decode(errors="replace")


async def closed_by(ws: ClientConnection, started: float) -> tuple[int | None, str | None]:
    """The close code and reason, which must arrive within LIMIT_S of `started`."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            left = started + LIMIT_S - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the terminal was still open {LIMIT_S} s later")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.recv(), left)
    return ws.close_code, ws.close_reason


async def add_editor(running: Running, tag: str) -> Account:
    member = await register(running.rest, tag)
    added = await running.rest.post(
        f"/api/v1/projects/{running.pid}/members",
        json={"email": member.email, "role": "editor"},
        headers=running.owner.headers,
    )
    assert added.status_code == 201, added.text
    return member


async def test_terminal_closes_when_its_user_stops_being_an_editor(running: Running) -> None:
    demoted, removed = await add_editor(running, "demoted"), await add_editor(running, "removed")
    first = await open_terminal(running, demoted.headers)
    second = await open_terminal(running, removed.headers)
    members = f"/api/v1/projects/{running.pid}/members"

    started = time.monotonic()
    patched = await running.rest.patch(
        f"{members}/{demoted.id}", json={"role": "viewer"}, headers=running.owner.headers
    )
    assert patched.status_code == 200
    assert await closed_by(first, started) == (REVOKED, "your role is now viewer")
    await answers(second)

    started = time.monotonic()
    gone = await running.rest.delete(f"{members}/{removed.id}", headers=running.owner.headers)
    assert gone.status_code == 204
    assert await closed_by(second, started) == (REVOKED, "removed from the project")


async def test_terminal_closes_on_logout_and_project_deletion(running: Running) -> None:
    owner, rest = running.owner, running.rest
    again = await rest.post(
        "/api/v1/auth/login", json={"email": owner.email, "password": owner.password}
    )
    other = {"Authorization": f"Bearer {again.json()['access_token']}"}
    ticket = (await rest.post("/api/v1/auth/ws-ticket", headers=owner.headers)).json()["ticket"]
    by_ticket = await open_terminal(running, ticket=ticket)
    by_other_token = await open_terminal(running, other)

    started = time.monotonic()
    assert (await rest.post("/api/v1/auth/logout", headers=owner.headers)).status_code == 204
    revoked = await closed_by(by_ticket, started)
    assert revoked == (REVOKED, "the token of this connection was revoked")
    await answers(by_other_token)

    started = time.monotonic()
    assert (await rest.delete(f"/api/v1/projects/{running.pid}", headers=other)).status_code == 202
    assert await closed_by(by_other_token, started) == (REVOKED, "the project was deleted")
