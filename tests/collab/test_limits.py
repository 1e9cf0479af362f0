"""Permissions, malformed input, rate limits and slow clients (silent ones: test_liveness.py)."""

from __future__ import annotations

import asyncio
import json
import random
import socket
from dataclasses import replace
from typing import Any

import httpx
import pytest
import websockets

from collab import ot
from collab.settings import CollabSettings
from tests.collab.conftest import FAST, Message, WSClient
from tests.collab.editing import (
    Editor,
    add_member,
    converge,
    file_text,
    project_with_file,
)
from tests.conftest import Server, api_client, serving
from tests.support import register
from vaporform.config import Config

# -- permissions and bad input -----------------------------------------------------------


async def test_viewers_may_join_but_not_edit(
    nodes: tuple[Server, Server], api: httpx.AsyncClient
) -> None:
    owner, pid = await project_with_file(api, "v.txt", "x")
    viewer = await add_member(api, owner, pid, "viewer", "viewer")
    ws = await WSClient.connect(nodes[0], pid, viewer.access_token)
    try:
        joined = await ws.join("v.txt")
        assert joined["payload"]["role"] == "viewer"
        error = await ws.reply(
            await ws.send("op", {"path": "v.txt", "revision": 0, "op": [1, "y"], "seq": 1})
        )
        assert error["type"] == "error"
        assert error["payload"]["code"] == "forbidden"
        assert error["payload"]["seq"] == 1
        await ws.send("cursor", {"path": "v.txt", "revision": 0, "position": 1})
        assert (await ws.reply(await ws.send("ping")))["type"] == "pong"
    finally:
        await ws.close()
    assert await file_text(api, owner, pid, "v.txt") == "x"


async def test_auth_and_membership_are_checked_before_accepting(
    nodes: tuple[Server, Server], api: httpx.AsyncClient
) -> None:
    owner, pid = await project_with_file(api)
    stranger = await register(api, "stranger")
    url = nodes[0].base_url.replace("http://", "ws://") + f"/api/v1/projects/{pid}/collab"
    for headers, status in (({}, 401), (stranger.headers, 404)):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(url, additional_headers=headers)
        assert refused.value.response.status_code == status
    ticket = (await api.post("/api/v1/auth/ws-ticket", headers=owner.headers)).json()["ticket"]
    ws = await WSClient.connect(nodes[1], pid, "", ticket=ticket)
    assert (await ws.reply(await ws.send("ping")))["type"] == "pong"
    await ws.close()
    with pytest.raises(websockets.InvalidStatus):  # single use
        await websockets.connect(url + f"?ticket={ticket}")


def frame(kind: str, **payload: Any) -> str:
    return json.dumps({"id": "r", "type": kind, "payload": payload})


async def test_malformed_messages_get_errors_and_the_connection_stays_open(
    nodes: tuple[Server, Server], api: httpx.AsyncClient
) -> None:
    owner, pid = await project_with_file(api, "g.txt", "abc")
    await api.put(
        f"/api/v1/projects/{pid}/files/bin.dat",
        json={"content": "AAEC/w==", "encoding": "base64"},
        headers=owner.headers,
    )
    ws = await WSClient.connect(nodes[0], pid, owner.access_token)

    async def error_after(raw: str | bytes) -> Message:
        before = len(ws.inbox)
        await ws.send_raw(raw)
        return await ws.wait_for(
            lambda m: m["type"] == "error" and ws.inbox.index(m) >= before, what="an error"
        )

    try:
        codes: list[tuple[str | bytes, str]] = [
            ("{not json", "invalid_json"),
            (b"\xff\xfe", "invalid_json"),
            ("[1, 2]", "invalid_message"),
            ('{"type": "dance"}', "unknown_type"),
            ('{"type": "op", "payload": 3}', "invalid_message"),
            (frame("join", path="../etc/passwd"), "invalid_path"),
            (frame("join", path="missing.txt"), "not_found"),
            (frame("join", path="bin.dat"), "not_text"),
            (frame("op", path="g.txt", revision=0, op=[3], seq=1), "not_joined"),
            (frame("chat", text=""), "invalid_message"),
            ("x" * (FAST.max_message_bytes + 1), "too_large"),
        ]
        for raw, code in codes:
            error = await error_after(raw)
            assert error["payload"]["code"] == code, (raw[:50], error)
        await ws.join("g.txt")
        bad_ops = [
            (frame("op", path="g.txt", revision=0, op=[4, "x"], seq=1), "length_mismatch"),
            (frame("op", path="g.txt", revision=0, op=[3, True], seq=1), "invalid_op"),
            (frame("op", path="g.txt", revision=9, op=[3], seq=1), "invalid_revision"),
            (frame("op", path="g.txt", revision=-1, op=[3], seq=1), "invalid_message"),
            (frame("cursor", path="g.txt", revision=0, position=99), "invalid_position"),
            (frame("cursor", path="g.txt", revision=5, position=0), "invalid_revision"),
        ]
        for raw, code in bad_ops:
            error = await error_after(raw)
            assert error["payload"]["code"] == code, (raw, error)
            assert error["payload"]["ref"] == error["ref"] == "r"
        huge = {"path": "g.txt", "revision": 0, "op": [3, "x" * (FAST.max_op_units + 1)], "seq": 2}
        error = await ws.reply(await ws.send("op", huge))
        assert error["payload"]["code"] == "too_large"
        assert (await ws.reply(await ws.send("ping")))["type"] == "pong"
        assert ws.closed is None
    finally:
        await ws.close()


async def test_op_rate_limit(config: Config, worker: None) -> None:
    limited = replace(config, collab=CollabSettings(op_rate=1, op_burst=3))
    async with (
        serving(limited) as server,
        api_client(server) as api,
    ):
        owner, pid = await project_with_file(api, "s.txt", "")
        ws = await WSClient.connect(server, pid, owner.access_token)
        await ws.join("s.txt")
        results = []
        for seq in range(1, 6):
            results.append(
                await ws.reply(
                    await ws.send(
                        "op",
                        {
                            "path": "s.txt",
                            "revision": seq - 1,
                            "op": [seq - 1, "a"] if seq > 1 else ["a"],
                            "seq": seq,
                        },
                    )
                )
            )
        kinds = [r["type"] for r in results]
        assert kinds[:3] == ["ack", "ack", "ack"]
        assert results[3]["payload"]["code"] == "rate_limited"
        assert results[3]["payload"]["retry_after_ms"] > 0
        await ws.close()


async def test_a_client_that_cannot_keep_up_is_disconnected(config: Config, worker: None) -> None:
    small = replace(config, collab=CollabSettings(send_queue=4, max_op_units=200_000))
    async with (
        serving(small) as server,
        api_client(server) as api,
    ):
        owner, pid = await project_with_file(api, "f.txt", "")
        url = server.base_url.replace("http://", "ws://") + f"/api/v1/projects/{pid}/collab"
        # Reads nothing: its buffers, then the sockets', then the server's queue fill up.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(server.base_url.rsplit(":", 1)[1])))
        sock.setblocking(False)
        slow = await websockets.connect(
            url, additional_headers=owner.headers, max_queue=1, sock=sock, compression=None
        )
        await slow.send('{"type": "join", "payload": {"path": "f.txt"}}')
        fast = await WSClient.connect(server, pid, owner.access_token)
        await fast.wait_for(
            lambda m: m["type"] == "presence" and m["payload"]["participant"]["paths"],
            what="the slow client's join",
        )
        editor = Editor(fast, "f.txt", random.Random(3))
        await editor.join()
        chunk = "z" * 190_000

        def slow_is_gone() -> bool:
            return any(
                m["type"] == "presence" and m["payload"]["event"] == "gone" for m in fast.inbox
            )

        for i in range(400):
            if slow_is_gone():
                break
            assert editor.client is not None
            grow = i % 2 == 0
            edit: ot.Op = [chunk] if grow else [-len(chunk)]
            sent = editor.client.edit(edit)
            assert sent is not None
            await editor.send(sent)
            await converge([editor])
        await fast.wait_for(
            lambda m: m["type"] == "presence" and m["payload"]["event"] == "gone",
            what="the slow client to be disconnected",
        )

        async def drain() -> None:
            while True:
                await asyncio.wait_for(slow.recv(), 10)

        with pytest.raises(websockets.ConnectionClosed) as closed:
            await drain()
        assert closed.value.rcvd is None or closed.value.rcvd.code == 4008
        await fast.close()
        await slow.close()


async def test_a_crowd_joining_does_not_overflow_the_people_already_there(
    config: Config, worker: None
) -> None:
    """Presence waits in one slot per participant, so it is bounded by the crowd, not by the
    send queue: people joining at once never disconnect those who read along."""
    crowd = 8
    # A long presence tick: all but the first join reach everybody in one flush.
    small = replace(config, collab=CollabSettings(send_queue=4, presence_tick_s=3.0))
    async with serving(small) as server, api_client(server) as api:
        owner, pid = await project_with_file(api, "f.txt", "x")
        # Array-frame clients get a tick's presence as blocks of envelopes, one-envelope
        # clients one frame per participant: both hear everybody else, never themselves.
        clients = [
            await WSClient.connect(server, pid, owner.access_token, batch=str(i % 2))
            for i in range(crowd)
        ]
        try:
            joined = await asyncio.gather(*(ws.join("f.txt") for ws in clients))
            everybody = {str(j["session_id"]) for j in joined}
            assert len(everybody) == crowd
            for ws, mine in zip(clients, joined, strict=True):
                me = str(mine["session_id"])
                known = {str(p["session_id"]) for p in mine["payload"]["participants"]}

                def sees_everybody(m: Message, known: set[str] = known, me: str = me) -> bool:
                    if m["type"] == "presence" and m["payload"]["participant"]["paths"]:
                        known.add(str(m["payload"]["participant"]["session_id"]))
                    return everybody - {me} <= known

                await ws.wait_for(sees_everybody, what="everybody's presence", timeout=20)
                about = [
                    m["payload"]["participant"]["session_id"]
                    for m in ws.inbox
                    if m["type"] == "presence"
                ]
                assert me not in about
            assert all(ws.closed is None for ws in clients)
            # Unslotted messages are still bounded: the queue keeps working for replies.
            assert (await clients[0].reply(await clients[0].send("ping")))["type"] == "pong"
        finally:
            for ws in clients:
                await ws.close()
