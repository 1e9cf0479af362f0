"""Test helpers for editing over WebSockets: projects with a file, an ot.js-like editor, and
which node owns a file."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable

import httpx

from collab import ot
from collab.client import OTClient
from collab.hub import Hub
from collab.room import Room
from tests.collab.conftest import WSClient
from tests.conftest import Server
from tests.support import Account, create_project, register, wait_until
from web.services import EXTENSION_KEY


async def project_with_file(
    api: httpx.AsyncClient, path: str = "main.py", content: str = "print('hi')\n"
) -> tuple[Account, str]:
    owner = await register(api, "owner")
    pid = (await create_project(api, owner))["id"]
    put = await api.put(
        f"/api/v1/projects/{pid}/files/{path}", json={"content": content}, headers=owner.headers
    )
    assert put.status_code == 201, put.text
    return owner, pid


async def add_member(
    api: httpx.AsyncClient, owner: Account, pid: str, role: str, tag: str = "member"
) -> Account:
    member = await register(api, tag)
    added = await api.post(
        f"/api/v1/projects/{pid}/members",
        json={"email": member.email, "role": role},
        headers=owner.headers,
    )
    assert added.status_code == 201, added.text
    return member


async def file_text(api: httpx.AsyncClient, who: Account, pid: str, path: str) -> str:
    got = await api.get(f"/api/v1/projects/{pid}/files/{path}", headers=who.headers)
    assert got.status_code == 200, got.text
    text: str = got.json()["content"]
    return text


class Editor:
    """A client that edits like ot.js: one op in flight, later edits composed behind it."""

    def __init__(self, ws: WSClient, path: str, rng: random.Random) -> None:
        self.ws = ws
        self.path = path
        self.rng = rng
        self.client: OTClient | None = None
        self.done = 0
        self.acks = 0

    async def join(self) -> None:
        joined = await self.ws.join(self.path)
        self.client = OTClient(joined["payload"]["content"], joined["payload"]["revision"])
        self.done = self.ws.inbox.index(joined) + 1

    async def send(self, op: ot.Op) -> None:
        assert self.client is not None
        payload = {"path": self.path, "revision": self.client.revision, "op": op}
        await self.ws.send("op", {**payload, "seq": self.client.seq})

    async def pump(self) -> None:
        assert self.client is not None
        while self.done < len(self.ws.inbox):
            message = self.ws.inbox[self.done]
            self.done += 1
            payload = message["payload"]
            if message["type"] == "error":
                raise AssertionError(f"error from the server: {message}")
            if payload.get("path") != self.path:
                continue
            if message["type"] == "ack":
                self.acks += 1
                following = self.client.acked(payload["revision"])
                if following is not None:
                    await self.send(following)
            elif message["type"] == "op":
                self.client.remote(payload["op"], payload["revision"])

    async def edit(self) -> None:
        assert self.client is not None
        text = self.client.text
        n = ot.utf16_len(text)
        at = self.rng.randint(0, len(text))
        start = ot.index_to_utf16(text, at)
        if at < len(text) and self.rng.random() < 0.4:
            gone = ot.utf16_len(text[at : at + self.rng.randint(1, 3)])
            op = ot.normalize([start, -gone, n - start - gone])
        else:
            op = ot.normalize([start, self.rng.choice(["a", "xy", "😀", "é", "\n"]), n - start])
        to_send = self.client.edit(op)
        if to_send is not None:
            await self.send(to_send)

    @property
    def idle(self) -> bool:
        return self.client is not None and self.client.inflight is None


async def converge(editors: list[Editor], timeout: float = 20) -> None:
    async def settled() -> bool:
        for editor in editors:
            await editor.pump()
        revisions = {e.client.revision for e in editors if e.client is not None}
        return all(e.idle for e in editors) and len(revisions) == 1

    await wait_until(settled, timeout=timeout, what="every editor to settle")


async def type_concurrently(editors: list[Editor], edits: int) -> None:
    async def typist(editor: Editor) -> None:
        for _ in range(edits):
            await editor.pump()
            await editor.edit()
            await asyncio.sleep(0)

    await asyncio.gather(*(typist(e) for e in editors))
    await converge(editors)


def hub_of(server: Server) -> Hub:
    """The collaboration hub of `server` (an in-process API node)."""
    hub: Hub = server.app.extensions[EXTENSION_KEY].collab
    return hub


def room_of(server: Server, pid: str) -> Room:
    """The collaboration room of project `pid` on `server`, which someone has entered."""
    return hub_of(server).rooms[uuid.UUID(pid)]


def owner_agreed(
    servers: tuple[Server, Server], pid: str, path: str
) -> Callable[[], Awaitable[bool]]:
    """Each node knows the other's participants in `path`, so both name the same owner."""

    async def condition() -> bool:
        rooms = [hub_of(s).rooms.get(uuid.UUID(pid)) for s in servers]
        if rooms[0] is None or rooms[1] is None:
            return False
        nodes = [{p.node for p in r.roster.in_path(path)} for r in (rooms[0], rooms[1])]
        return all(len(n) == 2 for n in nodes) and rooms[0].owner(path) == rooms[1].owner(path)

    return condition
