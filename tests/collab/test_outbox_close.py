"""A connection that ends takes its queued messages with it: the fan-out depth gauge
(vaporform_collab_fanout_queue_depth) counts only live connections, whenever the garbage
collector gets round to the session."""

from __future__ import annotations

import httpx

from collab.session import Session
from tests.collab.conftest import WSClient
from tests.collab.editing import hub_of, project_with_file, room_of
from tests.conftest import Server
from tests.support import wait_until


async def test_a_closed_connection_leaves_nothing_queued(
    nodes: tuple[Server, Server], api: httpx.AsyncClient
) -> None:
    owner, pid = await project_with_file(api, "q.txt", "0123456789")
    writer = await WSClient.connect(nodes[0], pid, owner.access_token)
    reader = await WSClient.connect(nodes[0], pid, owner.access_token)
    try:
        await writer.join("q.txt")
        session_id = (await reader.join("q.txt"))["session_id"]
        session = room_of(nodes[0], pid).peers[session_id]
        assert isinstance(session, Session)
        outbox = session.outbox  # held here, as a reference cycle holds it until collected
        await reader.close()

        async def left() -> bool:
            return session_id not in room_of(nodes[0], pid).peers

        await wait_until(left, what="the reader to leave the room")
        # Whatever was queued for it went with the connection, and nothing more comes.
        assert outbox.closed
        await writer.reply(
            await writer.send("op", {"path": "q.txt", "revision": 0, "op": [1, "x", 9], "seq": 1})
        )
        assert len(outbox) == 0

        async def drained() -> bool:  # the writer's own ack may still be in flight
            return hub_of(nodes[0]).fanout.depth() == 0

        await wait_until(drained, what="no message queued on the node")
    finally:
        await writer.close()
