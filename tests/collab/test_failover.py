"""Killing an API node (SIGKILL) mid-typing loses no acknowledged op.

One node is a real `vaporform api` process (so it can be killed without warning), the other
the in-process test server; both share PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest

from collab import ot
from tests.collab.conftest import WSClient
from tests.conftest import Server, api_client, free_port, serving
from tests.support import (
    Account,
    api_process_env,
    create_project,
    register,
    spawn_api,
    wait_for_api,
    wait_until,
)
from vaporform.config import Config


@pytest.fixture
async def doomed(config: Config) -> AsyncIterator[tuple[Server, asyncio.subprocess.Process]]:
    port = free_port()
    process = await spawn_api(api_process_env(config, port))
    try:
        await wait_for_api(port)
        yield Server(None, port), process  # type: ignore[arg-type]
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


class Typist:
    """Inserts unique markers, one op at a time, and remembers which were acknowledged."""

    def __init__(self, name: str, ws: WSClient, rng: random.Random) -> None:
        self.name, self.ws, self.rng = name, ws, rng
        self.acked: list[str] = []
        self.inflight: dict[str, Any] | None = None

    async def type(self, count: int) -> None:
        joined = await self.ws.join("k.txt")
        text, revision = joined["payload"]["content"], joined["payload"]["revision"]
        for seq in range(1, count + 1):
            marker = f"<{self.name}:{seq}>"
            # Markers go between markers, so none is ever split.
            cuts = [0, *(i + 1 for i, c in enumerate(text) if c == ">")]
            at = self.rng.choice(cuts)
            op = ot.normalize([at, marker, len(text) - at])
            payload = {"path": "k.txt", "revision": revision, "op": op, "seq": seq}
            self.inflight = {**payload, "client_id": self.name}
            ack = await self.ws.reply(await self.ws.send("op", self.inflight), timeout=20)
            assert ack["type"] == "ack", ack
            self.acked.append(marker)
            self.inflight = None
            # Catch up (re-joining answers with the current text) before the next edit.
            probe = await self.ws.join("k.txt")
            text, revision = probe["payload"]["content"], probe["payload"]["revision"]


async def test_killing_a_node_loses_no_acknowledged_op(
    config: Config, worker: None, doomed: tuple[Server, asyncio.subprocess.Process]
) -> None:
    async with (
        serving(config) as survivor,
        api_client(survivor) as api,
    ):
        owner: Account = await register(api, "owner")
        pid = (await create_project(api, owner))["id"]
        put = await api.put(
            f"/api/v1/projects/{pid}/files/k.txt", json={"content": ""}, headers=owner.headers
        )
        assert put.status_code == 201
        node, process = doomed
        typists = [
            Typist(
                f"t{i}",
                await WSClient.connect(node if i % 2 else survivor, pid, owner.access_token),
                random.Random(i),
            )
            for i in range(4)
        ]
        runs = [asyncio.ensure_future(t.type(60)) for t in typists]

        async def some_acked() -> bool:
            return all(len(t.acked) >= 5 for t in typists)

        await wait_until(some_acked, timeout=30, what="typing on both nodes")
        process.send_signal(signal.SIGKILL)
        results = await asyncio.gather(*runs, return_exceptions=True)
        assert results[0] is None, results[0]  # typists on the survivor finish
        assert results[2] is None, results[2]
        # The killed node's typists were cut off mid-way.
        assert all(isinstance(r, Exception) for r in results[1::2]), results

        # The killed node's typists reconnect to the survivor and resend what was in flight.
        for typist in typists[1::2]:
            if typist.inflight is not None:
                ws = await WSClient.connect(survivor, pid, owner.access_token)
                await ws.join("k.txt")
                ack = await ws.reply(await ws.send("op", typist.inflight))
                await ws.close()
                # A duplicate of the copy committed before the kill, or committed now
                # (transformed past everything since its base revision).
                assert ack["type"] == "ack", ack
                typist.acked.append(f"<{typist.name}:{typist.inflight['seq']}>")

        probe = await WSClient.connect(survivor, pid, owner.access_token)
        final = (await probe.join("k.txt"))["payload"]["content"]
        await probe.close()
        for typist in typists:
            for marker in typist.acked:
                assert final.count(marker) == 1, (marker, final)
        for typist in typists:
            await typist.ws.close()
