"""A crowded document is saved as a file version while edits go on, but not every few edits.

One writer types without pause (the idle checkpoint never comes), reaching
`checkpoint_every_ops` many times a second. Versions still appear while it types, spaced by at
least `checkpoint_busy_s`: without that floor, the hub's tick (every 250 ms) would save one
each time the edits came up to the count.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import replace
from datetime import datetime

from collab.settings import CollabSettings
from tests.collab.conftest import WSClient
from tests.conftest import api_client, serving
from tests.support import create_project, register
from vaporform.config import Config

BUSY_S = 2.0
PACED = CollabSettings(
    checkpoint_every_ops=3,
    checkpoint_busy_s=BUSY_S,
    checkpoint_idle_s=600.0,
    # The writer types as fast as its acks come back (800 a second on a fast machine):
    # no rate limit may refuse it.
    op_rate=1_000_000,
    op_burst=1_000_000,
)


async def test_a_busy_document_is_saved_at_most_once_per_busy_interval(
    config: Config, worker: None
) -> None:
    async with serving(replace(config, collab=PACED)) as server, api_client(server) as api:
        owner = await register(api, "owner")
        pid = (await create_project(api, owner))["id"]
        url = f"/api/v1/projects/{pid}/files"
        put = await api.put(f"{url}/k.txt", json={"content": ""}, headers=owner.headers)
        assert put.status_code == 201, put.text
        writer = await WSClient.connect(server, pid, owner.access_token)
        try:
            revision = (await writer.join("k.txt"))["payload"]["revision"]
            # Type for three busy intervals, one op in flight.
            until = time.monotonic() + 3 * BUSY_S + 0.5
            while time.monotonic() < until:
                op = [revision, "x"] if revision else ["x"]
                payload = {"path": "k.txt", "revision": revision, "op": op, "seq": revision + 1}
                ack = await writer.reply(await writer.send("op", payload))
                assert ack["type"] == "ack", ack
                revision = ack["payload"]["revision"]
        finally:
            await writer.close()
        got = await api.get(
            f"/api/v1/projects/{pid}/history", params={"path": "k.txt"}, headers=owner.headers
        )
        assert got.status_code == 200, got.text
        saves = sorted(
            datetime.fromisoformat(v["created_at"])
            for v in got.json()["items"]
            if "(3 edits)" in v["message"]
        )
    assert revision > 60, revision  # the count was reached many times over
    # Saved while the edits went on (the first at once, then about every BUSY_S)...
    assert len(saves) >= 2, saves
    # ...and never sooner than the floor allows; the slack covers when each save's
    # transaction began after it was decided (the tick alone would give 0.25 s gaps).
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(saves)]
    assert min(gaps) >= BUSY_S - 0.5, gaps
