"""A session leaves its room even when its handler is cancelled while it is leaving.

Quart cancels a WebSocket handler when its reader meets the client's disconnect. That can come
while the handler is already on its way out (a pump ended first: a send to the closed socket
failed). Here the session is kicked, the save of its last file waits for the project's
workspace lock (held by the test), and the handler is cancelled meanwhile, as Quart does.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from collab.session import Session
from store import db
from store.locks import lock_workspace
from tests.collab.conftest import WSClient
from tests.collab.editing import project_with_file, room_of
from tests.conftest import Server
from tests.support import wait_until
from vaporform.config import Config


def handler_of(session: Session) -> asyncio.Task[Any]:
    """The task serving `session`'s socket: the one whose coroutines include the handler
    (web/blueprints/collab.py `collab`) holding it."""
    for task in asyncio.all_tasks():
        coro: Any = task.get_coro()
        while coro is not None and hasattr(coro, "cr_frame"):
            frame = coro.cr_frame
            named = frame is not None and frame.f_code.co_name == "collab"
            if named and frame.f_locals.get("session") is session:
                return task
            coro = coro.cr_await
    raise AssertionError("no handler task holds the session")


async def test_a_handler_cancelled_while_leaving_still_leaves(
    nodes: tuple[Server, Server], api: httpx.AsyncClient, config: Config
) -> None:
    owner, pid = await project_with_file(api, "l.txt", "0123456789")
    watcher = await WSClient.connect(nodes[0], pid, owner.access_token)
    leaver = await WSClient.connect(nodes[0], pid, owner.access_token)
    holder = await db.connect(config.database_url)
    try:
        session_id = (await leaver.join("l.txt"))["session_id"]
        room = room_of(nodes[0], pid)
        session = room.peers[session_id]
        assert isinstance(session, Session)
        handler = handler_of(session)
        # Every save of the project now waits, the one on leaving included.
        await lock_workspace(holder, uuid.UUID(pid), exclusive=True)
        await leaver.reply(
            await leaver.send("op", {"path": "l.txt", "revision": 0, "op": [1, "x", 9], "seq": 1})
        )
        session.kick(4000, "test: kicked")

        async def leaving() -> bool:  # it has let go of the file, and waits for its save
            return not session.documents and session_id in room.peers

        await wait_until(leaving, what="the session to start leaving")
        handler.cancel()
        await asyncio.wait({handler}, timeout=10)
        assert handler.done()
    finally:
        await holder.close()  # the save goes on

    async def left() -> bool:
        return session_id not in room.peers

    await wait_until(left, what="the session to leave the room")
    await watcher.wait_for(
        lambda m: (
            m["type"] == "presence"
            and m["payload"]["event"] == "gone"
            and m["payload"]["participant"]["session_id"] == session_id
        ),
        what="the others to hear it left",
    )
    await watcher.close()
