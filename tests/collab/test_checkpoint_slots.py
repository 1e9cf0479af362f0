"""Checkpoints of many documents due at once take turns: at most `checkpoints_in_flight` save
at a time on a node, and the others follow, none lost.

Documents that started together reach `checkpoint_every_ops` together; all of them versioned
at once held back the ops of every document of the node. Here the test holds the project's
workspace lock, so each save that has its turn waits for it in PostgreSQL, where the waiting
ones can be counted.
"""

from __future__ import annotations

import uuid

import asyncpg
import httpx

from store import db
from store.locks import lock_workspace
from tests.collab.conftest import WSClient
from tests.collab.editing import file_text, project_with_file, room_of
from tests.conftest import Server
from tests.support import wait_until
from vaporform.config import Config

PATHS = [f"f{i}.txt" for i in range(4)]


async def waiting_for_the_lock(watcher: asyncpg.Connection) -> int:
    found = await watcher.fetchval(
        """
        SELECT count(*) FROM pg_locks
        WHERE locktype = 'advisory' AND NOT granted
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
        """
    )
    return int(found)


async def test_checkpoints_due_together_save_two_at_a_time(
    nodes: tuple[Server, Server], api: httpx.AsyncClient, config: Config
) -> None:
    owner, pid = await project_with_file(api, PATHS[0], "0123456789")
    for path in PATHS[1:]:
        put = await api.put(
            f"/api/v1/projects/{pid}/files/{path}",
            json={"content": "0123456789"},
            headers=owner.headers,
        )
        assert put.status_code == 201, put.text
    client = await WSClient.connect(nodes[0], pid, owner.access_token)
    holder = await db.connect(config.database_url)
    watcher = await db.connect(config.database_url)
    try:
        for path in PATHS:
            await client.join(path)
            await client.reply(
                await client.send("op", {"path": path, "revision": 0, "op": ["x", 10], "seq": 1})
            )
        room = room_of(nodes[0], pid)
        slots = room.hub.settings.checkpoints_in_flight
        assert slots == 2
        await lock_workspace(holder, uuid.UUID(pid), exclusive=True)
        for path in PATHS:
            room.documents[path].save_soon("test")

        async def taking_turns() -> bool:
            return (
                room.hub.checkpoints_queued == len(PATHS) - slots
                and await waiting_for_the_lock(watcher) == slots
            )

        await wait_until(taking_turns, what=f"{slots} saves in flight, the others queued")
        assert all(not room.documents[p].saving.done() for p in PATHS)  # type: ignore[union-attr]
    finally:
        await holder.close()  # the saves go on
    try:
        for path in PATHS:

            async def saved(path: str = path) -> bool:
                return await file_text(api, owner, pid, path) == "x0123456789"

            await wait_until(saved, what=f"{path} to be saved")
    finally:
        await watcher.close()
        await client.close()
