"""A connection whose announcement fails (Redis unreachable for a moment) leaves nothing behind.

Found by bench/fault_bench.py: after a Redis restart, a socket accepted while the broker's
publish failed was closed, but stayed registered in its room (and so in everyone's presence,
re-announced by the node's heartbeat) for ever.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from collab.hub import Hub
from tests.collab.conftest import WSClient
from tests.collab.editing import project_with_file
from tests.conftest import Server
from web.services import EXTENSION_KEY


async def test_a_failed_announcement_leaves_no_participant(
    nodes: tuple[Server, Server], api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, pid = await project_with_file(api, "g.txt", "ghost")
    stays = await WSClient.connect(nodes[0], pid, owner.access_token)
    try:
        await stays.join("g.txt")
        hub: Hub = nodes[0].app.extensions[EXTENSION_KEY].collab
        room = hub.rooms[uuid.UUID(pid)]
        before = (set(room.peers), set(room.roster.by_session), room.refs)

        async def unreachable(channel: str, message: bytes) -> None:
            raise ConnectionError("Redis is restarting")

        with monkeypatch.context() as patch:
            patch.setattr(hub.broker, "publish", unreachable)
            doomed = await WSClient.connect(nodes[0], pid, owner.access_token)
            with pytest.raises(AssertionError):
                await doomed.wait_for(lambda m: False, timeout=10, what="anything")
            assert doomed.closed is not None

        assert (set(room.peers), set(room.roster.by_session), room.refs) == before
        # The node serves the next connection as usual.
        after = await WSClient.connect(nodes[0], pid, owner.access_token)
        await after.join("g.txt")
        await after.close()
    finally:
        await stays.close()
