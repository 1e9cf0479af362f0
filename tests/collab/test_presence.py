"""Presence, cursors and chat across two API nodes."""

from __future__ import annotations

from typing import Any

import httpx

from tests.collab.conftest import Message, WSClient
from tests.collab.editing import (
    add_member,
    project_with_file,
)
from tests.conftest import Server
from tests.support import Account, assert_error, register

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
