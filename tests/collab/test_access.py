"""Open collaboration sockets lose what their user loses, within 2 s, on one node or across two.

Changes made through the API are announced: each case runs with the change made through the
node the socket is on, through another node (the event crosses Redis), and on one node without
Redis (in-process broker and revocation list), on nodes whose periodic re-check is a minute
apart, so only the announcement can close the socket in time. A disabled or deleted account is
changed in PostgreSQL directly, where nothing announces it: there the periodic re-check (the
default, every second) alone must catch it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import asyncpg
import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from store import users
from tests.collab.conftest import FAST, WSClient
from tests.collab.editing import add_member, project_with_file
from tests.conftest import Server, api_client, serving
from tests.support import Account, assert_error, wait_until
from vaporform.config import Config
from web.tokens import issue_access

LIMIT_S = 2.0
REVOKED = 4003
EVENTS_ONLY_S = 60.0  # a re-check interval no test outlasts


@pytest.fixture(scope="module")
async def pair(config: Config, worker: None) -> AsyncIterator[tuple[Server, Server]]:
    """Two nodes on one PostgreSQL and one Redis that learn of changes only by events."""
    events_only = replace(config, collab=FAST, access_recheck_s=EVENTS_ONLY_S)
    async with serving(events_only) as a, serving(events_only) as b:
        yield a, b


@pytest.fixture(scope="module")
async def lonely(config: Config, worker: None) -> AsyncIterator[Server]:
    """One node without Redis, learning of changes only by (in-process) events."""
    alone = replace(config, redis_url=None, collab=FAST, access_recheck_s=EVENTS_ONLY_S)
    async with serving(alone) as found:
        yield found


@pytest.fixture(scope="module")
async def swept(config: Config, worker: None) -> AsyncIterator[Server]:
    """A node with the default re-check, for changes nothing announces."""
    async with serving(replace(config, collab=FAST)) as found:
        yield found


@dataclass
class Topology:
    socket_node: Server  # where the sockets are open
    change_node: Server  # where the REST call that changes access is made

    def api(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.change_node.base_url, timeout=30)


@pytest.fixture(params=["one node", "two nodes", "one node without Redis"])
async def topology(
    request: pytest.FixtureRequest, pair: tuple[Server, Server], lonely: Server
) -> Topology:
    if request.param == "one node":
        return Topology(pair[0], pair[0])
    if request.param == "two nodes":
        return Topology(pair[0], pair[1])
    return Topology(lonely, lonely)


@pytest.fixture
async def rest(topology: Topology) -> AsyncIterator[httpx.AsyncClient]:
    async with topology.api() as client:
        yield client


async def closed_by(ws: WSClient, started: float) -> websockets.frames.Close:
    """The close frame the server sent, which must arrive within LIMIT_S of `started`."""

    async def is_closed() -> bool:
        return ws.closed is not None

    left = started + LIMIT_S - time.monotonic()
    await wait_until(is_closed, timeout=max(left, 0.0), what="the server to close the socket")
    assert ws.closed is not None
    assert ws.closed.rcvd is not None, ws.closed
    return ws.closed.rcvd


async def still_open(ws: WSClient) -> None:
    answer = await ws.reply(await ws.send("ping"))
    assert answer["type"] == "pong", answer


async def login(http: httpx.AsyncClient, account: Account) -> str:
    response = await http.post(
        "/api/v1/auth/login", json={"email": account.email, "password": account.password}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def test_removed_member_is_disconnected(topology: Topology, rest: httpx.AsyncClient) -> None:
    owner, pid = await project_with_file(rest)
    editor = await add_member(rest, owner, pid, "editor")
    mine = await WSClient.connect(topology.socket_node, pid, owner.access_token)
    theirs = await WSClient.connect(topology.socket_node, pid, editor.access_token)
    await theirs.join("main.py")
    started = time.monotonic()
    removed = await rest.delete(
        f"/api/v1/projects/{pid}/members/{editor.id}", headers=owner.headers
    )
    assert removed.status_code == 204
    close = await closed_by(theirs, started)
    assert (close.code, close.reason) == (REVOKED, "removed from the project")
    await still_open(mine)
    # And they cannot come back.
    with pytest.raises(InvalidStatus) as refused:
        await WSClient.connect(topology.socket_node, pid, editor.access_token)
    assert refused.value.response.status_code == 404
    await mine.close()


async def test_editor_made_viewer_can_no_longer_send_ops(
    topology: Topology, rest: httpx.AsyncClient
) -> None:
    owner, pid = await project_with_file(rest, content="")
    editor = await add_member(rest, owner, pid, "editor")
    ws = await WSClient.connect(topology.socket_node, pid, editor.access_token)
    await ws.join("main.py")
    first = await ws.reply(
        await ws.send("op", {"path": "main.py", "revision": 0, "op": ["a"], "seq": 1})
    )
    assert first["type"] == "ack", first

    started = time.monotonic()
    patched = await rest.patch(
        f"/api/v1/projects/{pid}/members/{editor.id}",
        json={"role": "viewer"},
        headers=owner.headers,
    )
    assert patched.status_code == 200
    left = started + LIMIT_S - time.monotonic()
    access = await ws.wait_for(lambda m: m["type"] == "access", timeout=left, what="access")
    assert access["payload"] == {"role": "viewer", "previous_role": "editor"}
    assert access["user_id"] == editor.id
    refused = await ws.reply(
        await ws.send("op", {"path": "main.py", "revision": 1, "op": [1, "b"], "seq": 2})
    )
    assert refused["type"] == "error", refused
    assert refused["payload"]["code"] == "forbidden"
    assert refused["payload"]["role"] == "viewer"
    await still_open(ws)  # downgraded, not disconnected: viewers may read, move cursors, chat

    patched = await rest.patch(
        f"/api/v1/projects/{pid}/members/{editor.id}",
        json={"role": "editor"},
        headers=owner.headers,
    )
    assert patched.status_code == 200
    back = await ws.wait_for(
        lambda m: m["type"] == "access" and m["payload"]["role"] == "editor", what="access again"
    )
    assert back["payload"]["previous_role"] == "viewer"
    again = await ws.reply(
        await ws.send("op", {"path": "main.py", "revision": 1, "op": [1, "b"], "seq": 2})
    )
    assert again["type"] == "ack", again
    await ws.close()


async def test_logout_closes_the_sockets_opened_with_that_token(
    topology: Topology, rest: httpx.AsyncClient
) -> None:
    owner, pid = await project_with_file(rest)
    other_token = await login(rest, owner)
    minted = await rest.post("/api/v1/auth/ws-ticket", headers=owner.headers)
    ticket = minted.json()["ticket"]
    by_header = await WSClient.connect(topology.socket_node, pid, owner.access_token)
    by_ticket = await WSClient.connect(topology.socket_node, pid, "", ticket=ticket)
    by_other_token = await WSClient.connect(topology.socket_node, pid, other_token)
    for ws in (by_header, by_ticket, by_other_token):
        await ws.join("main.py")

    started = time.monotonic()
    out = await rest.post("/api/v1/auth/logout", headers=owner.headers)
    assert out.status_code == 204
    for ws in (by_header, by_ticket):
        close = await closed_by(ws, started)
        assert close.code == REVOKED
        assert close.reason == "the token of this connection was revoked"
    await still_open(by_other_token)  # another login of the same user is not affected
    await by_other_token.close()


async def test_deleting_the_project_closes_every_socket(
    topology: Topology, rest: httpx.AsyncClient
) -> None:
    owner, pid = await project_with_file(rest)
    viewer = await add_member(rest, owner, pid, "viewer")
    sockets = [
        await WSClient.connect(topology.socket_node, pid, owner.access_token),
        await WSClient.connect(topology.socket_node, pid, viewer.access_token),
    ]
    for ws in sockets:
        await ws.join("main.py")
    elsewhere_owner, elsewhere = await project_with_file(rest)
    bystander = await WSClient.connect(
        topology.socket_node, elsewhere, elsewhere_owner.access_token
    )

    started = time.monotonic()
    deleted = await rest.delete(f"/api/v1/projects/{pid}", headers=owner.headers)
    assert deleted.status_code == 202
    for ws in sockets:
        close = await closed_by(ws, started)
        assert (close.code, close.reason) == (REVOKED, "the project was deleted")
    await still_open(bystander)
    await bystander.close()


# -- accounts: changed in PostgreSQL, announced by nothing ---------------------------------


async def test_a_disabled_account_is_refused_everywhere(swept: Server, pool: asyncpg.Pool) -> None:
    server = swept
    async with api_client(server) as http:
        owner, pid = await project_with_file(http)
        ws = await WSClient.connect(server, pid, owner.access_token)
        await ws.join("main.py")
        started = time.monotonic()
        async with pool.acquire() as conn:
            disabled = await users.set_disabled(conn, uuid.UUID(owner.id), True)
        assert disabled is not None
        assert disabled.disabled

        close = await closed_by(ws, started)
        assert (close.code, close.reason) == (REVOKED, "the account is disabled or deleted")

        async def refused() -> bool:
            response = await http.get("/api/v1/projects", headers=owner.headers)
            return response.status_code == 401

        await wait_until(refused, timeout=max(started + LIMIT_S - time.monotonic(), 0), what="401")
        assert_error(await http.get("/api/v1/auth/me", headers=owner.headers), 401, "unauthorized")
        with pytest.raises(InvalidStatus) as handshake:
            await WSClient.connect(server, pid, owner.access_token)
        assert handshake.value.response.status_code == 401
        # Its refresh tokens were revoked with it, and it cannot log in.
        again = await http.post("/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
        assert_error(again, 401, "invalid_refresh_token")
        login_attempt = await http.post(
            "/api/v1/auth/login", json={"email": owner.email, "password": owner.password}
        )
        assert_error(login_attempt, 401, "account_disabled")
        ticket = await http.post("/api/v1/auth/ws-ticket", headers=owner.headers)
        assert_error(ticket, 401, "unauthorized")

        async with pool.acquire() as conn:
            enabled = await users.set_disabled(conn, uuid.UUID(owner.id), False)
        assert enabled is not None
        assert not enabled.disabled
        token = await login(http, owner)

        async def accepted() -> bool:
            listed = await http.get(
                "/api/v1/projects", headers={"Authorization": f"Bearer {token}"}
            )
            return listed.status_code == 200 and [p["id"] for p in listed.json()["items"]] == [pid]

        # Unannounced, like the disabling: the cached standing is at most a second old.
        await wait_until(accepted, timeout=LIMIT_S, what="the enabled account to be accepted")
        # Enabling does not bring back the refresh tokens revoked by disabling.
        stale = await http.post("/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
        assert_error(stale, 401, "invalid_refresh_token")


async def test_a_token_whose_user_does_not_exist_is_refused(
    swept: Server, pool: asyncpg.Pool, config: Config
) -> None:
    server = swept
    async with api_client(server) as http:
        owner, pid = await project_with_file(http)
        member = await add_member(http, owner, pid, "editor")
        ws = await WSClient.connect(server, pid, member.access_token)
        await ws.join("main.py")
        assert (await http.get("/api/v1/projects", headers=member.headers)).status_code == 200
        started = time.monotonic()
        async with pool.acquire() as conn:
            await conn.execute("DELETE FROM users WHERE id = $1", uuid.UUID(member.id))

        close = await closed_by(ws, started)
        assert (close.code, close.reason) == (REVOKED, "the account is disabled or deleted")

        async def refused() -> bool:
            response = await http.get("/api/v1/projects", headers=member.headers)
            return response.status_code == 401

        await wait_until(refused, timeout=max(started + LIMIT_S - time.monotonic(), 0), what="401")
        with pytest.raises(InvalidStatus) as handshake:
            await WSClient.connect(server, pid, member.access_token)
        assert handshake.value.response.status_code == 401

    # A well-signed token for a user that never existed: refused at once.
    token, _ = issue_access(config.jwt, uuid.uuid4(), "user")
    never = {"Authorization": f"Bearer {token}"}
    async with api_client(server) as http:
        assert_error(await http.get("/api/v1/projects", headers=never), 401, "unauthorized")
        assert_error(await http.post("/api/v1/auth/ws-ticket", headers=never), 401, "unauthorized")
    with pytest.raises(InvalidStatus) as handshake:
        await WSClient.connect(server, pid, token)
    assert handshake.value.response.status_code == 401
