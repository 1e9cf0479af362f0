"""Two API nodes serving one file: its ops are committed by one of them (collab/forward.py).

Without forwarding, every op of the other node races the owner's for its revision and is
retried under the document's lock. The tests count those races and the forwarded ops in the
process's metrics (both nodes serve in this process), and check that a silent owner costs a
wait, never an op.
"""

from __future__ import annotations

import random
from dataclasses import replace

from prometheus_client import REGISTRY

from collab.settings import CollabSettings
from tests.collab.conftest import WSClient
from tests.collab.editing import (
    Editor,
    owner_agreed,
    project_with_file,
    room_of,
    type_concurrently,
)
from tests.conftest import api_client, serving
from tests.support import wait_until
from vaporform.config import Config

# No checkpoints during the test, and no heartbeat to make a silenced node heard again.
QUIET = CollabSettings(
    checkpoint_idle_s=600,
    checkpoint_every_ops=100_000,
    presence_heartbeat_s=600,
    op_rate=500,
    op_burst=500,
)


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _forwarded(outcome: str) -> float:
    return _count("vaporform_collab_forwarded_ops_total", outcome=outcome)


def _conflicts() -> float:
    return _count("vaporform_collab_commit_conflicts_total")


async def test_a_file_typed_into_on_two_nodes_is_committed_by_one(
    config: Config, worker: None
) -> None:
    quiet = replace(config, collab=QUIET)
    async with serving(quiet) as a, serving(quiet) as b, api_client(a) as api:
        owner, pid = await project_with_file(api, "f.txt", "hello\n")
        sockets = [await WSClient.connect((a, b)[i % 2], pid, owner.access_token) for i in range(6)]
        rng = random.Random(7)
        editors = [Editor(ws, "f.txt", random.Random(rng.random())) for ws in sockets]
        try:
            for editor in editors:
                await editor.join()
            await wait_until(
                owner_agreed((a, b), pid, "f.txt"), what="both nodes to name one owner"
            )
            owning = a if room_of(a, pid).owner("f.txt") == room_of(a, pid).hub.node_id else b
            other = b if owning is a else a
            elsewhere = [e for i, e in enumerate(editors) if (a, b)[i % 2] is other]
            conflicts, forwarded = _conflicts(), _forwarded("committed")
            await type_concurrently(editors, 30)
            texts = {e.client.text for e in editors if e.client is not None}
            assert len(texts) == 1
            # Every op of the editors on the other node went to the owner, and no commit
            # raced another for a revision.
            sent_elsewhere = sum(e.acks for e in elsewhere)
            assert sent_elsewhere > 0

            # An ack leaves when its op reaches the sender's node, maybe before the owner's
            # answer, which is what is counted.
            async def answered() -> bool:
                return _forwarded("committed") - forwarded >= sent_elsewhere

            await wait_until(answered, what="the owner's answers")
            assert _forwarded("committed") - forwarded == sent_elsewhere
            assert _conflicts() == conflicts

            # An op the owner refuses is refused with the same error as on the owner itself.
            bad = {"path": "f.txt", "revision": 0, "op": [10_000, "x"], "seq": 10_000}
            codes = []
            for server in (owning, other):
                probe = await WSClient.connect(server, pid, owner.access_token)
                await probe.join("f.txt")
                refused = await probe.reply(await probe.send("op", bad))
                await probe.close()
                assert refused["type"] == "error", refused
                codes.append(refused["payload"]["code"])
            assert codes[0] == codes[1] != "internal_error", codes
        finally:
            for ws in sockets:
                await ws.close()


async def test_an_owner_that_does_not_answer_is_passed_by(config: Config, worker: None) -> None:
    quiet = replace(config, collab=QUIET)
    async with serving(quiet) as a, serving(quiet) as b, api_client(a) as api:
        owner, pid = await project_with_file(api, "s.txt", "abc")
        on_a = await WSClient.connect(a, pid, owner.access_token)
        on_b = await WSClient.connect(b, pid, owner.access_token)
        try:
            await on_a.join("s.txt")
            await on_b.join("s.txt")
            await wait_until(
                owner_agreed((a, b), pid, "s.txt"), what="both nodes to name one owner"
            )
            owning = a if room_of(a, pid).owner("s.txt") == room_of(a, pid).hub.node_id else b
            writer = on_b if owning is a else on_a
            # The owner stops hearing its channel (as when its broker subscription is lost)
            # but stays in everyone's presence.
            await room_of(owning, pid).hub.forwarder.stop()
            unanswered = _forwarded("unanswered")
            first = {"path": "s.txt", "revision": 0, "op": [3, "!"], "seq": 1}
            ack = await writer.reply(await writer.send("op", first), timeout=15)
            assert ack["type"] == "ack", ack
            assert ack["payload"]["revision"] == 1, ack
            assert _forwarded("unanswered") == unanswered + 1
            # Silent now: the next op is committed where it arrives, without waiting.
            second = {"path": "s.txt", "revision": 1, "op": [4, "?"], "seq": 2}
            ack = await writer.reply(await writer.send("op", second))
            assert ack["type"] == "ack", ack
            assert ack["payload"]["revision"] == 2, ack
            assert _forwarded("unanswered") == unanswered + 1
            for server in (a, b):
                probe = await WSClient.connect(server, pid, owner.access_token)
                joined = await probe.join("s.txt")
                await probe.close()
                assert joined["payload"]["content"] == "abc!?", joined
        finally:
            await on_a.close()
            await on_b.close()
