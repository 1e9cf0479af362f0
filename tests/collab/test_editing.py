"""Editing over real WebSockets to two API nodes sharing PostgreSQL and Redis: ops, acks,
convergence, checkpoints, resubmits, outside writes and batched frames."""

from __future__ import annotations

import random
from dataclasses import replace

import httpx

from collab import ot
from tests.collab.conftest import FAST, WSClient
from tests.collab.editing import (
    Editor,
    add_member,
    converge,
    file_text,
    project_with_file,
    type_concurrently,
)
from tests.conftest import Server, api_client, serving
from tests.support import wait_until
from vaporform.config import Config

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
    plain = await WSClient.connect(nodes[0], pid, owner.access_token, batch="0")
    batched = await WSClient.connect(nodes[0], pid, owner.access_token)
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


async def test_a_rejoin_behind_what_memory_holds_is_answered_from_the_database(
    config: Config, worker: None
) -> None:
    """A node keeps only the last few ops of a live document in memory. A client re-joining
    at an older revision (it was offline, or the node restarted) gets the ops it missed from
    PostgreSQL, not a `resync` that would make it drop its unsent edits."""
    short = replace(config, collab=replace(FAST, history_in_memory=3))
    async with serving(short) as node, api_client(node) as http:
        owner, pid = await project_with_file(http, "h.txt", "")
        typist = await WSClient.connect(node, pid, owner.access_token)
        late = await WSClient.connect(node, pid, owner.access_token)
        try:
            await typist.join("h.txt")
            for revision in range(6):
                op: ot.Op = [revision, str(revision)] if revision else [str(revision)]
                sent = {"path": "h.txt", "revision": revision, "op": op}
                ack = await typist.reply(await typist.send("op", {**sent, "seq": revision + 1}))
                assert ack["type"] == "ack", ack
            joined = await late.join("h.txt", revision=1)
            payload = joined["payload"]
            assert payload["revision"] == 6
            missed = payload["ops"]
            assert [o["revision"] for o in missed] == [2, 3, 4, 5, 6]
            text = "0"  # the text at revision 1
            for each in missed:
                text = ot.apply(text, each["op"])
            assert text == payload["content"] == "012345"
            # A revision the document never reached is refused (after catching up).
            stale = await late.reply(await late.send("join", {"path": "h.txt", "revision": 7}))
            assert stale["type"] == "error", stale
        finally:
            await typist.close()
            await late.close()
