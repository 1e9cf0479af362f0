"""A node that missed more ops than the log keeps jumps to the latest snapshot.

Two API nodes on one database, with different Redis prefixes: the second node's commits never
reach the first over the broker, as in a Redis outage. While the first holds the document at
revision 0, the second commits, checkpoints and snapshots until the ops the first would need are
pruned. The first node's next commit finds the gap: its clients are told to re-join (`resync`)
and, once they have, edit on at the latest revision.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

import asyncpg

from collab.settings import CollabSettings
from store import collab as store
from tests.collab.conftest import WSClient
from tests.conftest import api_client, serving
from tests.support import create_project, register, wait_until
from vaporform.config import Config

PRUNING = CollabSettings(
    checkpoint_idle_s=0.2,
    checkpoint_every_ops=3,
    snapshot_every=4,
    keep_ops=2,
    op_rate=500,
    op_burst=500,
)


async def test_a_node_behind_the_pruned_log_resyncs_its_clients(
    config: Config, worker: None, pool: asyncpg.Pool
) -> None:
    behind = replace(config, collab=PRUNING)
    ahead = replace(config, collab=PRUNING, redis_prefix=config.redis_prefix + "other:")
    async with serving(behind) as a, serving(ahead) as b, api_client(a) as api:
        owner = await register(api, "owner")
        pid = (await create_project(api, owner))["id"]
        put = await api.put(
            f"/api/v1/projects/{pid}/files/k.txt", json={"content": ""}, headers=owner.headers
        )
        assert put.status_code == 201
        reader = await WSClient.connect(a, pid, owner.access_token)
        writer = await WSClient.connect(b, pid, owner.access_token)
        try:
            assert (await reader.join("k.txt"))["payload"]["revision"] == 0
            joined = (await writer.join("k.txt"))["payload"]
            text, revision = joined["content"], joined["revision"]
            document_id = await _document_id(pool, pid)

            async def pruned() -> bool:
                nonlocal text, revision
                op = [len(text), "x"] if text else ["x"]
                payload = {"path": "k.txt", "revision": revision, "op": op, "seq": revision + 1}
                ack = await writer.reply(await writer.send("op", payload))
                assert ack["type"] == "ack", ack
                text, revision = text + "x", ack["payload"]["revision"]
                async with pool.acquire() as conn:
                    oldest = await store.oldest_revision(conn, document_id)
                return oldest is not None and oldest > 1

            await wait_until(pruned, timeout=30, what="the second node's ops to be pruned")
            # Node A never heard of them: its cache is still at revision 0.
            sent = await reader.send("op", {"path": "k.txt", "revision": 0, "op": ["A"], "seq": 1})
            refused = await reader.reply(sent)
            assert refused["type"] == "error", refused
            assert refused["payload"]["code"] == "resync", refused
            told = await reader.wait_for(
                lambda m: m["type"] == "error" and m.get("ref") is None, what="the resync"
            )
            assert told["payload"] == {**told["payload"], "code": "resync", "path": "k.txt"}

            rejoined = (await reader.join("k.txt"))["payload"]
            assert (rejoined["content"], rejoined["revision"]) == (text, revision)
            ack = await reader.reply(
                await reader.send(
                    "op", {"path": "k.txt", "revision": revision, "op": ["A", revision], "seq": 2}
                )
            )
            assert ack["type"] == "ack", ack
            assert ack["payload"]["revision"] == revision + 1
        finally:
            await reader.close()
            await writer.close()


async def _document_id(pool: asyncpg.Pool, project_id: str) -> int:
    async with pool.acquire() as conn:
        found = await conn.fetchval(
            "SELECT id FROM collab_documents WHERE project_id = $1 AND path = 'k.txt'",
            uuid.UUID(project_id),
        )
    assert isinstance(found, int)
    return found
