"""Sessions over real WebSockets to real hypercorn servers sharing PostgreSQL and Redis.

`nodes` are two API servers (two apps, two brokers, one Redis): clients spread over both
must behave exactly as on one.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
import websockets

from collab import ot
from collab.client import OTClient
from collab.settings import CollabSettings
from tests.collab.conftest import Message, WSClient
from tests.conftest import Server, start_server
from tests.support import Account, assert_error, create_project, register, wait_until
from vaporform.config import Config

FAST = CollabSettings(checkpoint_idle_s=0.5, checkpoint_every_ops=50, op_rate=500, op_burst=500)


@pytest.fixture(scope="module")
async def nodes(config: Config, worker: None) -> AsyncIterator[tuple[Server, Server]]:
    fast = replace(config, collab=FAST)
    a, stop_a, task_a = await start_server(fast)
    b, stop_b, task_b = await start_server(fast)
    yield a, b
    stop_a.set()
    stop_b.set()
    await asyncio.gather(task_a, task_b)


@pytest.fixture
async def api(nodes: tuple[Server, Server]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=nodes[0].base_url, timeout=30) as client:
        yield client


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


# -- editing -----------------------------------------------------------------------------


async def test_join_op_ack_and_broadcast(
    nodes: tuple[Server, Server], api: httpx.AsyncClient
) -> None:
    owner, pid = await project_with_file(api, "a.txt", "hello")
    a = await WSClient.connect(nodes[0], pid, owner.access_token)
    b = await WSClient.connect(nodes[1], pid, owner.access_token)
    try:
        joined = await a.join("a.txt")
        assert joined["payload"]["content"] == "hello"
        assert joined["payload"]["revision"] == 0
        assert {"timestamp", "user_id", "session_id", "id", "ref"} <= set(joined)
        assert joined["user_id"] == owner.id
        await b.join("a.txt")
        ref = await a.send("op", {"path": "a.txt", "revision": 0, "op": [5, " world"], "seq": 1})
        ack = await a.reply(ref)
        assert ack["type"] == "ack"
        assert ack["payload"] == {"path": "a.txt", "revision": 1, "seq": 1}
        remote = await b.wait_for(lambda m: m["type"] == "op", what="the remote op")
        assert remote["payload"]["op"] == [5, " world"]
        assert remote["payload"]["revision"] == 1
        assert remote["user_id"] == owner.id
        assert not [m for m in a.inbox if m["type"] == "op"]  # the sender gets only the ack
    finally:
        await a.close()
        await b.close()


async def test_clients_typing_on_two_nodes_converge_and_are_checkpointed(
    nodes: tuple[Server, Server], api: httpx.AsyncClient
) -> None:
    owner, pid = await project_with_file(api, "doc.txt", "start 😀 text\n")
    rng = random.Random(42)
    sockets = [await WSClient.connect(nodes[i % 2], pid, owner.access_token) for i in range(6)]
    editors = [Editor(ws, "doc.txt", random.Random(rng.random())) for ws in sockets]
    try:
        for editor in editors:
            await editor.join()
        await type_concurrently(editors, 40)
        texts = {e.client.text for e in editors if e.client is not None}
        assert len(texts) == 1
        final = texts.pop()
        assert sum(e.acks for e in editors) >= 6  # edits were composed, but some went through
        revision = editors[0].client.revision if editors[0].client else -1
        # The server agrees, on both nodes.
        for node in nodes:
            probe = await WSClient.connect(node, pid, owner.access_token)
            joined = await probe.join("doc.txt")
            assert joined["payload"]["content"] == final
            assert joined["payload"]["revision"] == revision
            await probe.close()

        # Idle for checkpoint_idle_s: the text becomes a file version.
        async def saved() -> bool:
            return await file_text(api, owner, pid, "doc.txt") == final

        await wait_until(saved, timeout=15, what="the checkpoint")
    finally:
        for ws in sockets:
            await ws.close()


async def test_resubmit_after_reconnect_is_not_duplicated(
    nodes: tuple[Server, Server], api: httpx.AsyncClient
) -> None:
    owner, pid = await project_with_file(api, "r.txt", "abc")
    first = await WSClient.connect(nodes[0], pid, owner.access_token)
    await first.join("r.txt")
    op = {"path": "r.txt", "revision": 0, "op": [3, "!"], "seq": 1, "client_id": "tab-1"}
    await first.send("op", op)
    await first.close()  # gone before (or just after) the ack

    # Reconnect through the other node and send the same op again.
    second = await WSClient.connect(nodes[1], pid, owner.access_token)
    try:
        joined = await second.join("r.txt", revision=0)
        missed = joined["payload"]["ops"]
        mine = [o for o in missed if o["client_id"] == "tab-1" and o["seq"] == 1]
        ref = await second.send("op", op)
        ack = await second.reply(ref)
        assert ack["type"] == "ack"
        if mine:  # committed before we reconnected: acknowledged as a duplicate
            assert ack["payload"]["duplicate"] is True
            assert ack["payload"]["revision"] == mine[0]["revision"]
        probe = await WSClient.connect(nodes[0], pid, owner.access_token)
        assert (await probe.join("r.txt"))["payload"]["content"] == "abc!"
        # The same (client_id, seq) naming a different, later op is refused, not dropped.
        reused = await probe.reply(await probe.send("op", {**op, "revision": 1, "op": [4, "?"]}))
        assert reused["payload"]["code"] == "stale_seq"
        await probe.close()
        # Keys are scoped per user: another user's tab-1/1 is a different op.
        other = await add_member(api, owner, pid, "editor", "eve")
        theirs = await WSClient.connect(nodes[0], pid, other.access_token)
        await theirs.join("r.txt")
        ack = await theirs.reply(await theirs.send("op", {**op, "revision": 1, "op": [4, "?"]}))
        await theirs.close()
        assert ack["payload"] == {"path": "r.txt", "revision": 2, "seq": 1}
    finally:
        await second.close()


async def test_rest_write_to_a_live_document_becomes_an_op(
    nodes: tuple[Server, Server], api: httpx.AsyncClient
) -> None:
    owner, pid = await project_with_file(api, "live.txt", "one\ntwo\n")
    ws = await WSClient.connect(nodes[1], pid, owner.access_token)
    try:
        editor = Editor(ws, "live.txt", random.Random(1))
        await editor.join()
        assert editor.client is not None
        sent = editor.client.edit([8, "three\n"])
        assert sent is not None
        await editor.send(sent)
        await converge([editor])
        put = await api.put(
            f"/api/v1/projects/{pid}/files/live.txt",
            json={"content": "zero\none\ntwo\n"},
            headers=owner.headers,
        )
        assert put.status_code == 200, put.text

        async def merged() -> bool:
            await editor.pump()
            return editor.client is not None and editor.client.text == "zero\none\ntwo\nthree\n"

        await wait_until(merged, timeout=15, what="the outside write to arrive as an op")

        async def saved() -> bool:
            return await file_text(api, owner, pid, "live.txt") == "zero\none\ntwo\nthree\n"

        await wait_until(saved, timeout=15, what="the merged text to be saved")
    finally:
        await ws.close()


async def test_batching_clients_get_the_same_messages_in_fewer_frames(
    nodes: tuple[Server, Server], api: httpx.AsyncClient
) -> None:
    owner, pid = await project_with_file(api, "b.txt", "")
    plain = await WSClient.connect(nodes[0], pid, owner.access_token)
    batched = await WSClient.connect(nodes[0], pid, owner.access_token, batch="1")
    writer = await WSClient.connect(nodes[1], pid, owner.access_token)
    try:
        for ws in (plain, batched, writer):
            await ws.join("b.txt")
        # Many ops in a burst (one per seq, each based on the previous ack).
        for seq in range(1, 101):
            await writer.reply(
                await writer.send(
                    "op",
                    {
                        "path": "b.txt",
                        "revision": seq - 1,
                        "op": ot.normalize([seq - 1, "x"]),
                        "seq": seq,
                    },
                )
            )

        def revisions(ws: WSClient) -> list[int]:
            return [m["payload"]["revision"] for m in ws.inbox if m["type"] == "op"]

        async def all_arrived() -> bool:
            return len(revisions(plain)) == len(revisions(batched)) == 100

        await wait_until(all_arrived, timeout=15, what="every op on both clients")
        assert revisions(batched) == revisions(plain) == list(range(1, 101))
        assert batched.frames <= plain.frames
    finally:
        for ws in (plain, batched, writer):
            await ws.close()


# -- presence, cursors, chat -------------------------------------------------------------


async def test_presence_and_cursors_appear_move_and_disappear(
    nodes: tuple[Server, Server], api: httpx.AsyncClient
) -> None:
    owner, pid = await project_with_file(api, "p.txt", "0123456789")
    other = await add_member(api, owner, pid, "editor", "ada")
    a = await WSClient.connect(nodes[0], pid, owner.access_token)
    b = await WSClient.connect(nodes[1], pid, other.access_token)
    try:
        await a.join("p.txt")

        def present(who: Account, paths: list[str]) -> Any:
            def check(m: Message) -> bool:
                p = m["payload"]
                return bool(
                    m["type"] == "presence"
                    and p.get("event") == "update"
                    and p["participant"]["user_id"] == who.id
                    and p["participant"]["paths"] == paths
                )

            return check

        joined = await b.join("p.txt")
        names = {p["user_id"] for p in joined["payload"]["participants"]}
        assert names == {owner.id, other.id}
        seen = await a.wait_for(present(other, ["p.txt"]), what="b's presence")
        colour = seen["payload"]["participant"]["color"]
        assert colour.startswith("#")

        # b's cursor at 8, then a inserts 3 characters at 2 before b's cursor arrives.
        await a.reply(
            await a.send("op", {"path": "p.txt", "revision": 0, "op": [2, "abc", 8], "seq": 1})
        )
        await b.send("cursor", {"path": "p.txt", "revision": 0, "position": 8, "selection_end": 9})
        cursor = await a.wait_for(lambda m: m["type"] == "cursor", what="b's cursor")
        assert cursor["payload"]["position"] == 11
        assert cursor["payload"]["selection_end"] == 12
        assert cursor["payload"]["revision"] == 1
        assert cursor["payload"]["color"] == colour
        assert cursor["session_id"] == seen["payload"]["participant"]["session_id"]

        await b.reply(await b.send("leave", {"path": "p.txt"}))
        await a.wait_for(present(other, []), what="b leaving the file")
        await b.close()
        gone = await a.wait_for(
            lambda m: m["type"] == "presence" and m["payload"]["event"] == "gone",
            what="b gone",
        )
        assert gone["payload"]["participant"]["user_id"] == other.id
    finally:
        await a.close()
        await b.close()


async def test_chat_is_delivered_and_persisted(
    nodes: tuple[Server, Server], api: httpx.AsyncClient
) -> None:
    owner, pid = await project_with_file(api)
    viewer = await add_member(api, owner, pid, "viewer", "viv")
    a = await WSClient.connect(nodes[0], pid, owner.access_token)
    b = await WSClient.connect(nodes[1], pid, viewer.access_token)
    try:
        for i in range(3):
            await a.send("chat", {"text": f"hello {i}"})
        for ws in (a, b):
            last = await ws.wait_for(
                lambda m: m["type"] == "chat" and m["payload"]["text"] == "hello 2", what="chat"
            )
            assert last["payload"]["name"] == "Owner"
            assert last["user_id"] == owner.id
        base = f"/api/v1/projects/{pid}/chat"
        page = (await api.get(base + "?limit=2", headers=viewer.headers)).json()["items"]
        assert [m["text"] for m in page] == ["hello 2", "hello 1"]
        before = page[-1]["message_id"]
        rest = (await api.get(f"{base}?before={before}", headers=viewer.headers)).json()["items"]
        assert [m["text"] for m in rest] == ["hello 0"]
        assert_error(await api.get(base + "?limit=0", headers=owner.headers), 400, "invalid_query")
        assert_error(await api.get(base + "?before=nope", headers=owner.headers), 400)
        stranger = await register(api, "stranger")
        assert_error(await api.get(base, headers=stranger.headers), 404, "not_found")
        assert_error(await api.get(base), 401)
    finally:
        await a.close()
        await b.close()


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


async def _closed(ws: WSClient) -> bool:
    return ws.closed is not None


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


async def test_op_rate_limit_and_silent_clients(config: Config, worker: None) -> None:
    limited = replace(config, collab=CollabSettings(op_rate=1, op_burst=3, client_timeout_s=1))
    server, stop, task = await start_server(limited)
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as api:
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

            # A client that says nothing (not even ping) is disconnected; the others see it go.
            silent = await WSClient.connect(server, pid, owner.access_token)
            talker = await WSClient.connect(server, pid, owner.access_token)

            async def chatty() -> None:
                while silent.closed is None:
                    await talker.reply(await talker.send("ping"))
                    await asyncio.sleep(0.2)

            pinging = asyncio.ensure_future(chatty())
            await talker.wait_for(
                lambda m: m["type"] == "presence" and m["payload"]["event"] == "gone",
                what="the silent client to be dropped",
            )
            await wait_until(lambda: _closed(silent), timeout=10, what="the close")
            assert isinstance(silent.closed, websockets.ConnectionClosed)
            assert silent.closed.rcvd is not None
            assert silent.closed.rcvd.code == 4000
            await pinging
            await talker.close()
    finally:
        stop.set()
        await task


async def test_a_client_that_cannot_keep_up_is_disconnected(config: Config, worker: None) -> None:
    small = replace(config, collab=CollabSettings(send_queue=4, max_op_units=200_000))
    server, stop, task = await start_server(small)
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as api:
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
    finally:
        stop.set()
        await task
