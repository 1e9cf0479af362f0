"""Liveness: a client that only reads stays connected; one whose peer is gone is dropped.

Nothing asks a client to speak. The server sends a quiet array-frame connection an empty frame
now and then, and the API's sockets drop a peer that acknowledges nothing for `dead_peer_s`
(collab/settings.py, web/serving.py). Both are short here.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import Callable
from dataclasses import replace

import websockets

from tests.collab.conftest import FAST, Message, WSClient
from tests.collab.editing import project_with_file
from tests.conftest import Server, api_client, serving
from tests.support import wait_until
from vaporform.config import Config

LIVELY = replace(FAST, keepalive_s=0.2, dead_peer_s=1.5)


async def reader(server: Server, pid: str, token: str, query: str = "") -> WSClient:
    """A client as a browser tab is: it answers protocol pings (every WebSocket stack does)
    and sends nothing of its own."""
    url = server.base_url.replace("http://", "ws://") + f"/api/v1/projects/{pid}/collab{query}"
    headers = {"Authorization": f"Bearer {token}"}
    return WSClient(await websockets.connect(url, additional_headers=headers, ping_interval=None))


def presence(event: str, session_id: str) -> Callable[[Message], bool]:
    def matches(m: Message) -> bool:
        if m["type"] != "presence":
            return False
        who: str = m["payload"]["participant"]["session_id"]
        return who == session_id and m["payload"]["event"] == event

    return matches


async def test_a_client_that_only_reads_stays_connected(config: Config, worker: None) -> None:
    async with (
        serving(replace(config, collab=LIVELY)) as server,
        api_client(server) as api,
    ):
        owner, pid = await project_with_file(api, "r.txt", "hello")
        watcher = await WSClient.connect(server, pid, owner.access_token)
        await watcher.join("r.txt")
        arrays = await reader(server, pid, owner.access_token)
        simple = await reader(server, pid, owner.access_token, "?batch=0")
        ids = [(await client.join("r.txt"))["session_id"] for client in (arrays, simple)]
        await simple.wait_for(lambda m: m["type"] == "presence", what="the others' presence")
        frames, messages = arrays.frames, len(arrays.inbox)

        # Twenty empty frames (one per hub tick at most, a quarter of a second): more than three
        # times as long as a dead peer may stay silent, with nothing said by either reader.
        async def kept_alive() -> bool:
            return arrays.frames >= frames + 20

        await wait_until(kept_alive, timeout=30, what="keep-alive frames")
        assert arrays.closed is None
        assert simple.closed is None
        late = arrays.inbox[messages:]
        assert all(m["type"] == "presence" for m in late), late  # empty frames carry nothing
        # One envelope per frame never gets an empty one.
        assert simple.frames == len(simple.inbox)
        for session_id in ids:
            assert not [m for m in watcher.inbox if presence("gone", session_id)(m)]

        # The application-level ping still answers.
        for client in (arrays, simple):
            assert (await client.reply(await client.send("ping")))["type"] == "pong"
        for client in (watcher, arrays, simple):
            await client.close()


async def handshake(server: Server, pid: str, token: str, receive_buffer: int) -> socket.socket:
    """A collaboration socket made by hand, with a small receive buffer, for a client that
    will stop reading."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    port = int(server.base_url.rsplit(":", 1)[1])
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /api/v1/projects/{pid}/collab HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += await asyncio.wait_for(loop.sock_recv(sock, 1), 10)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def masked_text_frame(text: str) -> bytes:
    data = text.encode()
    assert len(data) < 126
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return bytes([0x81, 0x80 | len(data)]) + mask + masked


async def test_a_peer_that_stops_acknowledging_is_dropped(config: Config, worker: None) -> None:
    async with (
        serving(replace(config, collab=LIVELY)) as server,
        api_client(server) as api,
    ):
        # Far more than the stalled client's buffer holds: the server is left with data that
        # is never acknowledged (its peer's window stays shut, as a vanished peer's would).
        owner, pid = await project_with_file(api, "big.txt", "x" * 300_000)
        watcher = await WSClient.connect(server, pid, owner.access_token)
        own = (await watcher.join("big.txt"))["session_id"]
        stalled = await handshake(server, pid, owner.access_token, receive_buffer=4096)
        try:
            join = json.dumps({"type": "join", "payload": {"path": "big.txt"}})
            await asyncio.get_running_loop().sock_sendall(stalled, masked_text_frame(join))
            arrived = await watcher.wait_for(
                lambda m: (
                    m["type"] == "presence"
                    and m["payload"]["participant"]["session_id"] != own
                    and m["payload"]["participant"]["paths"] == ["big.txt"]
                ),
                what="the stalled client's join",
            )
            gone = arrived["payload"]["participant"]["session_id"]
            # It never reads again; its presence goes within a few times `dead_peer_s`.
            await watcher.wait_for(presence("gone", gone), timeout=20, what="the dead peer to go")
            assert watcher.closed is None
        finally:
            stalled.close()
            await watcher.close()
