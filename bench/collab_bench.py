"""Load generator for live collaboration.

Client behaviour: one WebSocket per client; every document starts with 2000 characters; an
edit inserts or deletes 1-8 characters at a uniform position (50/50, keeping the document
between 1000 and 3000 characters); at most one op in flight per client, edits made meanwhile
composed into one pending op (collab/client.py, the ot.js client). Closed loop: the next
edit right after the ack. Open loop: Poisson arrivals, --rate edits/s per client.

Reports acked edits/s and remote-op latency (from a client sending an op to another client
receiving it) p50/p95/p99, then checks every acked op is committed: a fresh join of each
document must be at the revision the acks add up to. With the database at hand (a throwaway
stack, or --database-url) it also reports what reached PostgreSQL in the measured window: ops
committed per second, the transactions that carried them per second (distinct `xmin` of the
rows), and every transaction committed in the database per second (bench/db_activity.py).

    python bench/collab_bench.py                     # every scenario on a throwaway stack
    python bench/collab_bench.py --only closed-1x10 --seconds 10
    python bench/collab_bench.py --only closed-250x4-one-project   # 1000 people, one project
    python bench/collab_bench.py --idle 2000         # memory of the API with idle connections
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import connections_bench as connections
from bench import db_activity
from bench.stack import running_stack
from bench.stats import percentile
from collab import ot
from collab.client import OTClient

ALPHABET = "abcdefghijklmnopqrstuvwxyz      \n"
# Browsers always negotiate permessage-deflate; --no-compression shows what it costs.
COMPRESSION: str | None = "deflate"
# --batch: ask the server to pack queued messages into one frame (a JSON array).
BATCH = False
# The stack's settings for load: no per-connection op limit, any number of bench users.
LOAD_ENV = {
    "VAPORFORM_COLLAB_OP_RATE": "1000000",
    "VAPORFORM_COLLAB_OP_BURST": "1000000",
    "VAPORFORM_REGISTER_PER_IP": "1000000",
}


@dataclass(frozen=True)
class Scenario:
    name: str
    documents: int
    clients_per_document: int
    rate: float | None  # edits/s per client (open loop); None: closed loop
    one_project: bool = False  # every document in one project (else a project each)


SCENARIOS = [
    Scenario("closed-1x10", 1, 10, None),
    Scenario("closed-1x50", 1, 50, None),
    Scenario("closed-1x200", 1, 200, None),
    Scenario("open-1x200@2", 1, 200, 2.0),
    Scenario("closed-250x4", 250, 4, None),
    Scenario("closed-250x4-one-project", 250, 4, None, one_project=True),
]


@dataclass
class Shared:
    sent_at: dict[tuple[str, int], float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    acked_edits: int = 0
    acked_ops: dict[tuple[str, str], int] = field(default_factory=dict)
    measuring: bool = False
    errors: list[dict[str, Any]] = field(default_factory=list)


class LengthClient(OTClient):
    """The ot.js client state machine tracking only the document's length.

    Edits need nothing else (the text is ASCII, so any position is valid), and applying every
    remote op to a copy of the text costs the generator as much CPU as the server spends:
    the server's copy is what the tests check for convergence.
    """

    def __init__(self, text: str, revision: int) -> None:
        super().__init__("", revision)
        self.length = len(text)

    def edit(self, op: ot.Op) -> ot.Op | None:
        self.length += _delta(op)
        if self.inflight is None:
            self.inflight = op
            self.seq += 1
            return op
        self.buffer = op if self.buffer is None else ot.compose(self.buffer, op)
        return None

    def remote(self, op: ot.Op, revision: int) -> ot.Op:
        if self.inflight is not None:
            self.inflight, op = ot.transform(self.inflight, op)
        if self.buffer is not None:
            self.buffer, op = ot.transform(self.buffer, op)
        self.length += _delta(op)
        self.revision = revision
        return op


def _delta(op: ot.Op) -> int:
    return sum(len(c) if isinstance(c, str) else c for c in op if isinstance(c, str) or c < 0)


def random_edit(rng: random.Random, n: int) -> ot.Op:
    insert = n < 1000 or (n <= 3000 and rng.random() < 0.5)
    size = rng.randint(1, 8)
    if insert:
        at = rng.randint(0, n)
        return ot.normalize([at, "".join(rng.choices(ALPHABET, k=size)), n - at])
    at = rng.randint(0, n - size)
    return ot.normalize([at, -size, n - at - size])


def open_socket(ws_url: str, token: str) -> websockets.connect:
    """A collaboration socket as the bench's clients open it (await it, or `async with`).

    No keepalive pings: a saturated generator would time them out and measure itself.
    """
    return websockets.connect(
        ws_url,
        additional_headers={"Authorization": f"Bearer {token}"},
        max_size=2**24,
        ping_interval=None,
        open_timeout=60,
        compression=COMPRESSION,
    )


def decode(raw: str | bytes) -> list[dict[str, Any]]:
    """The messages of one frame (with `?batch=1` a frame may be a JSON array of them)."""
    decoded = json.loads(raw)
    return decoded if isinstance(decoded, list) else [decoded]


class BenchClient:
    def __init__(self, name: str, pid: str, path: str, shared: Shared, rng: random.Random) -> None:
        self.name = name
        self.pid = pid
        self.path = path
        self.shared = shared
        self.rng = rng
        self.client: LengthClient | None = None
        self.ws: websockets.ClientConnection | None = None
        self.composed = 0  # edits in the in-flight op
        self.pending_edits = 0  # edits composed into the buffer
        self.acked = asyncio.Event()
        self.early: list[dict[str, Any]] = []

    async def connect(self, ws_url: str, token: str) -> None:
        self.ws = await open_socket(ws_url, token)
        await self.ws.send(json.dumps({"id": "j", "type": "join", "payload": {"path": self.path}}))
        while self.client is None:
            for message in decode(await self.ws.recv()):
                if self.client is not None:
                    self.early.append(message)  # after `joined` in the same batch
                elif message["type"] == "joined":
                    payload = message["payload"]
                    self.client = LengthClient(payload["content"], payload["revision"])

    async def send(self, op: ot.Op) -> None:
        assert self.client is not None
        assert self.ws is not None
        seq = self.client.seq
        self.shared.sent_at[(self.name, seq)] = time.perf_counter()
        payload = {
            "path": self.path,
            "revision": self.client.revision,
            "op": op,
            "seq": seq,
            "client_id": self.name,
        }
        await self.ws.send(json.dumps({"type": "op", "payload": payload}))

    async def edit(self) -> None:
        assert self.client is not None
        to_send = self.client.edit(random_edit(self.rng, self.client.length))
        if to_send is None:
            self.pending_edits += 1
        else:
            self.composed = 1
            await self.send(to_send)

    async def read(self) -> None:
        assert self.ws is not None
        assert self.client is not None
        for message in self.early:
            await self._handle(message)
        async for raw in self.ws:
            for message in decode(raw):
                await self._handle(message)

    async def _handle(self, message: dict[str, Any]) -> None:
        assert self.client is not None
        kind, payload = message["type"], message["payload"]
        if kind == "op":
            self.client.remote(payload["op"], payload["revision"])
            sent = self.shared.sent_at.get((payload["client_id"], payload["seq"]))
            if sent is not None and self.shared.measuring:
                self.shared.latencies.append((time.perf_counter() - sent) * 1000)
        elif kind == "ack":
            if self.shared.measuring:
                self.shared.acked_edits += self.composed
            key = (self.pid, self.path)
            self.shared.acked_ops[key] = self.shared.acked_ops.get(key, 0) + 1
            following = self.client.acked(payload["revision"])
            self.composed, self.pending_edits = self.pending_edits, 0
            if following is not None:
                await self.send(following)
            self.acked.set()
        elif kind == "error":
            self.shared.errors.append(payload)

    async def closed_loop(self, until: float) -> None:
        while time.perf_counter() < until:
            self.acked.clear()
            await self.edit()
            await self.acked.wait()

    async def open_loop(self, until: float, rate: float) -> None:
        while True:
            await asyncio.sleep(self.rng.expovariate(rate))
            if time.perf_counter() >= until:
                return
            await self.edit()


async def setup(
    http: httpx.AsyncClient, documents: int, *, one_project: bool = False
) -> tuple[str, list[tuple[str, str]]]:
    """A user and `documents` files of 2000 characters: in a project each (as separate teams
    would have: presence is per project), or all in one project."""
    email = f"bench-{random.getrandbits(48):x}@example.com"
    body = {"email": email, "password": "correct horse battery staple", "name": "Bench"}
    token = (await http.post("/api/v1/auth/register", json=body)).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    rng = random.Random(7)
    found = []
    pid = ""
    for i in range(documents):
        if not pid or not one_project:
            made = await http.post("/api/v1/projects", json={"name": f"bench {i}"}, headers=headers)
            pid = made.json()["id"]
        path = f"doc{i}.txt" if one_project else "doc.txt"
        content = "".join(rng.choices(ALPHABET, k=2000))
        put = await http.put(
            f"/api/v1/projects/{pid}/files/{path}", json={"content": content}, headers=headers
        )
        put.raise_for_status()
        found.append((pid, path))
    return token, found


def collab_url(url: str, pid: str, *, batch: bool | None = None) -> str:
    found = url.replace("http://", "ws://") + f"/api/v1/projects/{pid}/collab"
    return found + "?batch=1" if (BATCH if batch is None else batch) else found


async def joined_state(url: str, token: str, pid: str, path: str) -> dict[str, Any]:
    """The `joined` payload a fresh connection to the API at `url` gets for `path`: the
    document as that node has it (revision, content)."""
    async with open_socket(collab_url(url, pid), token) as probe:
        await probe.send(json.dumps({"id": "p", "type": "join", "payload": {"path": path}}))
        while True:
            for message in decode(await probe.recv()):
                if message["type"] == "joined":
                    payload: dict[str, Any] = message["payload"]
                    return payload


async def run(
    url: str, scenario: Scenario, seconds: float, warmup: float, database_url: str | None = None
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        token, docs = await setup(http, scenario.documents, one_project=scenario.one_project)
    shared = Shared()
    clients = [
        BenchClient(f"c{d}-{i}", pid, path, shared, random.Random(d * 1000 + i))
        for d, (pid, path) in enumerate(docs)
        for i in range(scenario.clients_per_document)
    ]
    for start in range(0, len(clients), 50):
        batch = clients[start : start + 50]
        await asyncio.gather(*(c.connect(collab_url(url, c.pid), token) for c in batch))
    readers = [asyncio.ensure_future(c.read()) for c in clients]
    began = time.perf_counter()
    until = began + warmup + seconds

    counters: list[db_activity.Reading] = []

    async def start_measuring() -> None:
        await asyncio.sleep(warmup)
        shared.measuring = True
        if database_url:
            counters.append(await db_activity.reading(database_url))

    measuring = asyncio.ensure_future(start_measuring())
    if scenario.rate is None:
        await asyncio.gather(*(c.closed_loop(until) for c in clients))
    else:
        rate = scenario.rate
        await asyncio.gather(*(c.open_loop(until, rate) for c in clients))
    shared.measuring = False
    await measuring
    if database_url:
        counters.append(await db_activity.reading(database_url))

    # Let in-flight ops land, then check every ack is a committed revision.
    for c in clients:
        if c.client is not None and c.client.inflight is not None:
            c.acked.clear()
            await asyncio.wait_for(c.acked.wait(), 30)

    async def revision_of(pid: str, path: str) -> int:
        return int((await joined_state(url, token, pid, path))["revision"])

    committed_ok = True
    for start in range(0, len(docs), 25):
        chunk = docs[start : start + 25]
        revisions = await asyncio.gather(*(revision_of(pid, path) for pid, path in chunk))
        for key, revision in zip(chunk, revisions, strict=True):
            committed_ok &= revision == shared.acked_ops.get(key, 0)
    for c in clients:
        assert c.ws is not None
        await c.ws.close()
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    lat = shared.latencies or [float("nan")]
    result = {
        "scenario": scenario.name,
        "clients": len(clients),
        "acked_edits_per_s": round(shared.acked_edits / seconds, 1),
        "remote_p50_ms": round(percentile(lat, 50), 2),
        "remote_p95_ms": round(percentile(lat, 95), 2),
        "remote_p99_ms": round(percentile(lat, 99), 2),
        "remote_ops": len(shared.latencies),
        "all_acked_committed": committed_ok,
        "errors": len(shared.errors),
    }
    if database_url:
        result |= await db_activity.figures(database_url, counters[0], counters[1])
    print(json.dumps(result), flush=True)
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="a running API (default: start a throwaway stack)")
    parser.add_argument("--database-url", help="the database of --url, for its figures")
    parser.add_argument("--only", action="append", help="scenario name (repeatable)")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--idle", type=int, default=0, help="only measure N idle connections")
    parser.add_argument("--no-compression", action="store_true")
    parser.add_argument("--batch", action="store_true", help="frames may carry several messages")
    args = parser.parse_args()
    global COMPRESSION, BATCH
    if args.no_compression:
        COMPRESSION = None
    BATCH = args.batch
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]

    async def everything(url: str, database_url: str | None) -> None:
        if args.idle:
            await connections.idle(url, args.idle, per_project=20, one_project=False)
            return
        for scenario in chosen:
            await run(url, scenario, args.seconds, args.warmup, database_url)

    if args.url:
        await everything(args.url, args.database_url)
        return
    async with running_stack(LOAD_ENV) as found:
        await everything(found.base_url, found.env["DATABASE_URL"])


if __name__ == "__main__":
    asyncio.run(main())
