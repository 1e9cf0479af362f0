"""Fault figures under load: the collaboration bench's clients while parts of the stack fail.

`--clients` people (default 200) edit one 2000-character file of one project, spread over
two API nodes that share PostgreSQL and Redis, while in turn (one fresh project each):

* ``api``: one API node is SIGKILLed, and started again on its port `--downtime` s later;
* ``worker``: the Temporal worker is SIGKILLed, and started again `--downtime` s later;
* ``redis``: Redis is stopped, and started again `--downtime` s later (empty: no persistence);
* ``postgres``: PostgreSQL is stopped (`pg_ctl -m fast`: every session is terminated), and
  started again `--downtime` s later.

Redis and PostgreSQL are the bench's own: a ``redis-server --save ""`` and a throwaway cluster
(``initdb``, ``pg_ctl`` from /usr/lib/postgresql/*/bin, run as the ``postgres`` user when
the bench runs as root) on free ports in a temp dir; the machine's servers are never touched.

Clients are the collaboration bench's (bench/collab_bench.py: same edits, ot.js client state
machine, one op in flight, open loop at `--rate` edits/s each, batched frames), keeping the
whole text as well, and behave as docs/protocol.md asks of a client that loses its
connection: reconnect to a live node (the other one first, with jittered backoff), re-join
with the revision they have, take the `ops` they missed (their own in-flight op among them is
its ack), then resend the op still unacknowledged with the same `client_id` and `seq`.
`internal_error`, `busy` and `rate_limited` answers to an op are resent the same way after a
backoff; `resync` is handled by a fresh join.

Reported per fault:

* acked ops lost: acks (ack, duplicate ack, own op in a re-join's `ops`, own op echoed back)
  whose `(client_id, seq)` is not what PostgreSQL committed at that revision; the bench adds
  a trigger that copies every committed row of `collab_ops` into a table of its own, so ops
  pruned behind a snapshot still count. After the load every client's text must equal the
  text the committed log replays to, and what a fresh join answers on both nodes.
* converged after: from the fault until every client is joined on a live connection and has
  applied every op that anyone had sent before the fault was over (for a kill: the kill; for
  a restart: the server answering again) and everything PostgreSQL had committed by then;
  its text at that revision is checked against the log's.
* errors seen by clients: error codes, close codes, failed connection attempts.

    python bench/fault_bench.py                      # 200 clients, every fault
    python bench/fault_bench.py --quick              # 20 clients, short phases
    python bench/fault_bench.py --only redis --clients 50
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import glob
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.collab_bench import (
    LOAD_ENV,
    BenchClient,
    LengthClient,
    Shared,
    collab_url,
    decode,
    joined_state,
    open_socket,
    setup,
)
from bench.stack import Stack, free_port, running_stack
from collab import ot

FAULTS = ["api", "worker", "redis", "postgres"]
# Answers to an op that ask for the same op again later.
RETRYABLE = {"internal_error", "busy", "rate_limited"}
DOOMED_NODE = 1  # the API node the `api` fault kills; clients start on both
NEWCOMERS = 10  # fresh connections a node is asked to accept at once after a fault


# -- the bench's own Redis and PostgreSQL ------------------------------------------------


async def _wait_for_port(port: int, deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


class Redis:
    """A `redis-server` of the bench's own, without persistence, on a free port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        log = open(self.root / "redis.log", "ab")  # noqa: SIM115 - inherited by the child
        with log:
            self.process = subprocess.Popen(
                [
                    *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no", "--dir", str(self.root)),
                ],
                stdout=log,
                stderr=log,
            )
        await _wait_for_port(self.port)

    async def stop(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            await asyncio.to_thread(process.wait, 15)
        self.process = None


class Postgres:
    """A throwaway PostgreSQL cluster in a temp dir, on a free port."""

    def __init__(self, root: Path) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version)
        if not found:
            raise SystemExit("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
        self.bin = Path(found[-1])
        self.root = root
        self.data = root / "pgdata"
        self.port = free_port()
        # initdb and postgres refuse to run as root.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self.as_user, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def init(self) -> None:
        if self.as_user:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres")

    async def start(self) -> None:
        # fsync off: a stop never loses what was committed (the kernel keeps it), and the
        # shared machine's disk is spared. Other settings are the defaults.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c max_connections=300 -c fsync=off -c full_page_writes=off"
        )
        pg_ctl = str(self.bin / "pg_ctl")
        log = str(self.root / "postgres.log")
        args = [pg_ctl, "-D", str(self.data), "-l", log, "-o", options, "-w", "-t", "60"]
        await asyncio.to_thread(self._run, *args, "start")

    async def stop(self, mode: str = "fast") -> None:
        pg_ctl = str(self.bin / "pg_ctl")
        await asyncio.to_thread(self._run, pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop")


def _version(path: str) -> int:
    name = Path(path).parent.name
    return int(name) if name.isdigit() else 0


@contextlib.asynccontextmanager
async def own_servers() -> AsyncIterator[tuple[Redis, Postgres]]:
    root = Path(tempfile.mkdtemp(prefix="vf-fault-"))
    redis, postgres = Redis(root), Postgres(root)
    started = False
    try:
        await asyncio.to_thread(postgres.init)
        await postgres.start()
        started = True
        await redis.start()
        yield redis, postgres
    finally:
        await redis.stop()
        if started:
            with contextlib.suppress(subprocess.CalledProcessError):
                await postgres.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


# What every insert into collab_ops committed, kept even when a snapshot prunes the op log.
AUDIT = """
CREATE TABLE bench_committed (LIKE collab_ops INCLUDING DEFAULTS);
CREATE FUNCTION bench_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_committed SELECT * FROM inserted;
    RETURN NULL;
END $$;
CREATE TRIGGER bench_record AFTER INSERT ON collab_ops
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION bench_record();
"""


# -- the clients ---------------------------------------------------------------------------


class TextClient(LengthClient):
    """The bench's client state that keeps the whole text too, to compare it with the server."""

    def __init__(self, text: str, revision: int) -> None:
        super().__init__(text, revision)
        self.text = text

    def edit(self, op: ot.Op) -> ot.Op | None:
        self.text = ot.apply(self.text, op)
        return super().edit(op)

    def remote(self, op: ot.Op, revision: int) -> ot.Op:
        applied = super().remote(op, revision)
        self.text = ot.apply(self.text, applied)
        return applied


class Reconnect(Exception):
    """Drop this connection and open another (the reason is already recorded)."""


class JoinRefused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _connect_failure(exc: BaseException) -> str:
    if isinstance(exc, websockets.InvalidStatus):
        return f"connect: HTTP {exc.response.status_code}"
    if isinstance(exc, ConnectionRefusedError):
        return "connect: refused"
    if isinstance(exc, TimeoutError):
        return "connect: timeout"
    return f"connect: {type(exc).__name__}"


def _closed(exc: websockets.ConnectionClosed) -> str:
    if exc.rcvd is None:
        return "close 1006 (no close frame)"
    return f"close {exc.rcvd.code}"


def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


class FaultClient(BenchClient):
    """A bench client that survives its node, Redis or PostgreSQL going away (see the top)."""

    _refs = itertools.count(1)

    def __init__(
        self,
        name: str,
        pid: str,
        path: str,
        shared: Shared,
        rng: random.Random,
        *,
        urls: list[str],
        token: str,
        home: int,
    ) -> None:
        super().__init__(name, pid, path, shared, rng)
        self.client: TextClient | None = None
        self.urls = urls
        self.token = token
        self.node = home
        self.joined = False
        self.ready = asyncio.Event()  # joined once
        self.epoch = 0  # connections opened; a resend planned on an older one is dropped
        self.acks: dict[int, int] = {}  # seq -> the revision it became, however learnt
        self.settled_seq = 0  # every op up to this seq is acked (or abandoned after a resync)
        self.sent_seq = 0  # the highest seq transmitted
        self.retries = 0  # resends of the op in flight
        self.reconnects = 0
        self.discarded_edits = 0
        self.seen: Counter[str] = Counter()  # errors, close codes, failed connects
        self.anomalies: list[str] = []  # what a correct server never makes a client see
        self.stopping = False
        self._tasks: set[asyncio.Task[None]] = set()

    # -- state ---------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        c = self.client
        return self.joined and c is not None and c.inflight is None and c.buffer is None

    def _anomaly(self, what: str) -> None:
        self.anomalies.append(what)
        self.seen["anomaly"] += 1

    def _record_ack(self, seq: int, revision: int) -> None:
        known = self.acks.setdefault(seq, revision)
        if known != revision:
            self._anomaly(f"seq {seq} acked as revision {known} and as {revision}")

    def _own_op_done(self, revision: int) -> ot.Op | None:
        """Our in-flight op became `revision` (ack, echo or re-join)."""
        client = self.client
        assert client is not None
        if revision != client.revision + 1:
            self._anomaly(f"own op became {revision} while at {client.revision}")
        self._record_ack(client.seq, revision)
        self.settled_seq = client.seq
        self.retries = 0
        following = client.acked(revision)
        self.composed, self.pending_edits = self.pending_edits, 0
        self.acked.set()
        return following

    # -- sending -------------------------------------------------------------------------

    async def send(self, op: ot.Op) -> None:
        """Send now if joined; otherwise the op waits in flight and is resent on re-join."""
        if not self.joined or self.ws is None or self.client is None:
            return
        self.sent_seq = max(self.sent_seq, self.client.seq)
        with contextlib.suppress(websockets.ConnectionClosed):
            await super().send(op)

    def _resend_later(self, seq: int, delay: float) -> None:
        epoch = self.epoch

        async def resend() -> None:
            await asyncio.sleep(delay)
            client = self.client
            if (
                self.epoch == epoch
                and client is not None
                and client.inflight is not None
                and client.seq == seq
            ):
                await self.send(client.inflight)

        task = asyncio.ensure_future(resend())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- connections ---------------------------------------------------------------------

    async def run(self) -> None:
        """Keep a joined connection until `stop`, moving to another node when one fails."""
        failures = 0
        while not self.stopping:
            url = collab_url(self.urls[self.node], self.pid, batch=True)
            try:
                ws = await open_socket(url, self.token)
            except Exception as exc:
                self.seen[_connect_failure(exc)] += 1
                failures += 1
                self.node = (self.node + 1) % len(self.urls)
                await asyncio.sleep(_backoff(failures, self.rng))
                continue
            self.ws, self.epoch = ws, self.epoch + 1
            try:
                await self._serve(ws)
            except websockets.ConnectionClosed as exc:
                if not self.stopping:
                    self.seen[_closed(exc)] += 1
            except JoinRefused as exc:
                self.seen[f"join refused: {exc.code}"] += 1
            except Reconnect:
                pass
            finally:
                self.joined = False
                self.ws = None
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 2)
            if self.stopping:
                return
            self.reconnects += 1
            failures = 1
            self.node = (self.node + 1) % len(self.urls)
            await asyncio.sleep(_backoff(failures, self.rng))

    async def stop(self) -> None:
        self.stopping = True
        ws = self.ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)
        for task in list(self._tasks):
            task.cancel()

    async def _join(
        self, ws: websockets.ClientConnection, since: int | None
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Join; the `joined` payload and the messages that followed it in its frame."""
        ref = f"j{next(self._refs)}"
        payload: dict[str, Any] = {"path": self.path}
        if since is not None:
            payload["revision"] = since
        await ws.send(json.dumps({"id": ref, "type": "join", "payload": payload}))
        while True:
            messages = decode(await ws.recv())
            for i, message in enumerate(messages):
                if message.get("ref") != ref:
                    continue  # ops of an earlier join, presence: superseded by the answer
                if message["type"] == "joined":
                    return message["payload"], messages[i + 1 :]
                if message["type"] == "error":
                    raise JoinRefused(str(message["payload"].get("code")))

    async def _serve(self, ws: websockets.ClientConnection) -> None:
        if self.client is None:
            joined, backlog = await self._join(ws, None)
            self.client = TextClient(joined["content"], int(joined["revision"]))
        else:
            try:
                joined, backlog = await self._join(ws, self.client.revision)
            except JoinRefused as exc:
                if exc.code != "resync":
                    raise
                self.seen["join refused: resync"] += 1
                joined, backlog = await self._resync(ws)
            else:
                self._replay(joined)
        self.joined = True
        self.ready.set()
        for message in backlog:
            await self._handle(message)
        client = self.client
        if client.inflight is not None:
            await self.send(client.inflight)  # the same seq: recognised if committed before
        while True:
            for message in decode(await ws.recv()):
                await self._handle(message)

    def _replay(self, joined: dict[str, Any]) -> None:
        client = self.client
        assert client is not None
        for row in joined.get("ops", []):
            revision = int(row["revision"])
            if revision <= client.revision:
                continue
            if revision != client.revision + 1:
                self._anomaly(f"re-join ops skip from {client.revision} to {revision}")
                raise Reconnect
            if row["client_id"] == self.name and (
                client.inflight is not None and row["seq"] == client.seq
            ):
                self._own_op_done(revision)  # what follows is sent once joined
            elif row["client_id"] == self.name and row["seq"] in self.acks:
                self._anomaly(f"re-join ops hold seq {row['seq']} again")
            else:
                client.remote(row["op"], revision)
        if client.revision != int(joined["revision"]):
            self._anomaly(f"re-join ended at {client.revision}, not {joined['revision']}")
            raise Reconnect

    async def _resync(
        self, ws: websockets.ClientConnection
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The node no longer has our revision: start again from a fresh join.

        An in-flight op that was transmitted may have been committed: resubmit it on its own
        base revision (the server transforms it past the log in PostgreSQL, or recognises
        it), then join afresh again. Edits composed behind it are dropped (counted).
        """
        old = self.client
        assert old is not None
        joined, backlog = await self._join(ws, None)
        if old.inflight is not None and self.sent_seq >= old.seq:
            payload = {
                "path": self.path,
                "revision": old.revision,
                "op": old.inflight,
                "seq": old.seq,
                "client_id": self.name,
            }
            await ws.send(json.dumps({"type": "op", "payload": payload}))
            answer = await self._answer_for(ws, old.seq, backlog)
            if answer["type"] == "ack":
                self._record_ack(old.seq, int(answer["payload"]["revision"]))
            else:
                self._anomaly(f"resubmit after resync: {answer['payload'].get('code')}")
            joined, backlog = await self._join(ws, None)
        dropped = (old.buffer is not None) + (old.inflight is not None and old.seq not in self.acks)
        self.discarded_edits += dropped
        self.settled_seq = old.seq
        self.client = TextClient(joined["content"], int(joined["revision"]))
        self.client.seq = old.seq
        self.composed = self.pending_edits = 0
        self.acked.set()
        return joined, backlog

    async def _answer_for(
        self, ws: websockets.ClientConnection, seq: int, backlog: list[dict[str, Any]]
    ) -> dict[str, Any]:
        pending = list(backlog)
        while True:
            for message in pending:
                if message["type"] in ("ack", "error") and message["payload"].get("seq") == seq:
                    return message
            pending = decode(await ws.recv())

    # -- receiving -----------------------------------------------------------------------

    async def _handle(self, message: dict[str, Any]) -> None:
        client = self.client
        assert client is not None
        kind, payload = message["type"], message["payload"]
        if kind == "op":
            revision = int(payload["revision"])
            own = payload["client_id"] == self.name
            if own and client.inflight is not None and payload["seq"] == client.seq:
                # Our op, committed by a retry the node made after telling us it had failed.
                following = self._own_op_done(revision)
                if following is not None:
                    await self.send(following)
                return
            if revision != client.revision + 1:
                self._anomaly(f"op {revision} arrived at revision {client.revision}")
                raise Reconnect
            client.remote(payload["op"], revision)
        elif kind == "ack":
            seq, revision = int(payload["seq"]), int(payload["revision"])
            if client.inflight is not None and seq == client.seq:
                following = self._own_op_done(revision)
                if following is not None:
                    await self.send(following)
            else:
                self._record_ack(seq, revision)  # a resend's duplicate of an op settled since
                self.seen["ack of an op already settled"] += 1
        elif kind == "error":
            code = str(payload.get("code"))
            self.seen[f"error {code}"] += 1
            seq = payload.get("seq")
            if code in RETRYABLE and client.inflight is not None and seq == client.seq:
                self.retries += 1
                delay = payload.get("retry_after_ms", 0) / 1000 or _backoff(self.retries, self.rng)
                self._resend_later(client.seq, delay)
            elif code in ("resync", "not_joined"):
                raise Reconnect
            elif seq is not None:
                self._anomaly(f"op refused: {code}: {payload.get('message')}")


def _backoff(failures: int, rng: random.Random) -> float:
    """Jittered exponential backoff: up to 0.1 s at first, at most 2 s."""
    return rng.uniform(0.5, 1.0) * min(2.0, 0.1 * 2.0 ** (failures - 1))


# -- one fault ---------------------------------------------------------------------------


@dataclass
class Result:
    fault: str
    clients: int
    outage_s: float
    acked: int = 0
    lost: int = 0
    converged_s: float | None = None
    settled: bool = False
    texts_equal: int = 0
    seen: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    acked_per_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    # A newcomer joining each node from the moment the fault is over, until both succeed.
    newcomers_s: float | None = None
    newcomers_seen: Counter[str] = field(default_factory=Counter)


@dataclass
class Bench:
    stack: Stack
    redis: Redis
    postgres: Postgres
    clients: int
    rate: float
    warmup: float
    seconds: float
    downtime: float

    async def _connect_db(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.stack.env["DATABASE_URL"])

    async def _head(self, document_id: int) -> int:
        conn = await self._connect_db()
        try:
            value = await conn.fetchval(
                "SELECT coalesce(max(revision), 0) FROM bench_committed WHERE document_id = $1",
                document_id,
            )
        finally:
            await conn.close()
        return int(value)

    async def _inject(self, fault: str) -> tuple[float, asyncio.Task[float] | None]:
        """Cause `fault`; when it is over for clients, and the restart still under way (it
        answers when the part is back)."""
        stack, downtime = self.stack, self.downtime

        async def later(start: Callable[[], Awaitable[object]]) -> float:
            await asyncio.sleep(downtime)
            await start()
            return time.perf_counter()

        if fault == "api":
            await asyncio.to_thread(stack.kill_api, DOOMED_NODE)
            return time.perf_counter(), asyncio.ensure_future(
                later(lambda: stack.start_api(DOOMED_NODE))
            )
        if fault == "worker":
            await asyncio.to_thread(stack.kill_worker)

            async def worker() -> None:
                stack.start_worker()

            return time.perf_counter(), asyncio.ensure_future(later(worker))
        if fault == "redis":
            await self.redis.stop()
            await asyncio.sleep(downtime)
            await self.redis.start()
            return time.perf_counter(), None
        if fault == "postgres":
            await self.postgres.stop("fast")
            await asyncio.sleep(downtime)
            await self.postgres.start()
            return time.perf_counter(), None
        raise ValueError(fault)

    async def run(self, fault: str) -> Result:
        urls = self.stack.api_urls
        async with httpx.AsyncClient(base_url=urls[0], timeout=60) as http:
            token, [(pid, path)] = await setup(http, 1)
        shared = Shared()
        clients = [
            FaultClient(
                f"f{i}",
                pid,
                path,
                shared,
                random.Random(i),
                urls=urls,
                token=token,
                home=i % len(urls),
            )
            for i in range(self.clients)
        ]
        runners: list[asyncio.Future[None]] = []
        for start in range(0, len(clients), 50):
            batch = clients[start : start + 50]
            runners.extend(asyncio.ensure_future(c.run()) for c in batch)
            await asyncio.gather(*(c.ready.wait() for c in batch))
        first = clients[0].client
        assert first is not None
        initial, base_revision = first.text, first.revision
        conn = await self._connect_db()
        try:
            document_id = int(
                await conn.fetchval(
                    "SELECT id FROM collab_documents WHERE project_id = $1 AND path = $2",
                    uuid.UUID(pid),
                    path,
                )
            )
        finally:
            await conn.close()

        began = time.perf_counter()
        until = began + self.warmup + self.seconds
        if self.rate > 0:
            loads = [asyncio.ensure_future(c.open_loop(until, self.rate)) for c in clients]
        else:
            loads = [asyncio.ensure_future(c.closed_loop(until)) for c in clients]
        await asyncio.sleep(self.warmup)
        before: Counter[str] = Counter()
        for c in clients:
            before.update(c.seen)
            c.seen.clear()  # what the fault makes clients see, not the warm-up
            c.reconnects = 0
        fault_at = time.perf_counter()
        over_at, restarting = await self._inject(fault)
        newcomers = asyncio.ensure_future(self._newcomers(token, pid, path, fault_at))
        head_then = await self._head(document_id)
        # Every op anyone had sent before the fault was over must be acked and reach everyone.
        sent_then = {c.name: c.sent_seq for c in clients}
        result = Result(fault, len(clients), outage_s=over_at - fault_at)
        if before:
            result.notes.append(f"seen before the fault: {_seen(before)}")
        marks: dict[str, float] = {}  # when each client had caught up
        # Each caught-up client's (revision, CRC of its text) at its next idle moment (with
        # nothing of its own pending, its text is the server's at that revision).
        checks: dict[str, tuple[int, int]] = {}
        target: int | None = None
        stop_edits_at = until
        deadline = until + 120
        settled_at: float | None = None

        while time.perf_counter() < deadline:
            now = time.perf_counter()
            if target is None and all(c.settled_seq >= sent_then[c.name] for c in clients):
                target = max(
                    [head_then]
                    + [c.acks.get(sent_then[c.name], 0) for c in clients if sent_then[c.name]]
                )
            if target is not None:
                for c in clients:
                    state = c.client
                    if state is None or not c.joined:
                        continue
                    if c.name not in marks and state.revision >= target:
                        marks[c.name] = now
                    if c.name in marks and c.name not in checks and c.idle:
                        checks[c.name] = (state.revision, _crc(state.text))
            quiet = len(marks) == len(clients) and all(c.idle for c in clients)
            if now >= stop_edits_at and quiet:
                revisions = {c.client.revision for c in clients if c.client is not None}
                if len(revisions) == 1 and revisions == {await self._head(document_id)}:
                    settled_at = time.perf_counter()
                    break
            await asyncio.sleep(0.05)
        for load in loads:
            load.cancel()
        await asyncio.gather(*loads, return_exceptions=True)
        if restarting is not None:
            result.outage_s = await restarting - fault_at
        result.newcomers_s, result.newcomers_seen = await newcomers
        result.settled = settled_at is not None
        if settled_at is not None:
            result.notes.append(f"idle and equal {settled_at - stop_edits_at:.1f} s after the load")
        if len(marks) == len(clients):
            result.converged_s = max(marks.values()) - fault_at
        else:
            result.notes.append(f"{len(clients) - len(marks)} clients never caught up")

        await self._verify(result, clients, checks, document_id, initial, base_revision, token)
        for c in clients:
            await c.stop()
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        for c in clients:
            result.seen.update(c.seen)
            result.reconnects += c.reconnects
        discarded = sum(c.discarded_edits for c in clients)
        if discarded:
            result.notes.append(f"{discarded} unacked edits dropped on resync")
        result.acked_per_s = round(result.acked / (until - began), 1)
        return result

    async def _newcomers(
        self, token: str, pid: str, path: str, fault_at: float
    ) -> tuple[float | None, Counter[str]]:
        """From the moment the fault is over, rounds of NEWCOMERS fresh connections joining
        on every node at once, every 0.2 s until a whole round works: when (after the
        fault) that was true of all nodes, and what failed before."""
        seen: Counter[str] = Counter()

        async def newcomer(url: str) -> bool:
            try:
                await asyncio.wait_for(joined_state(url, token, pid, path), 10)
                return True
            except websockets.ConnectionClosed as exc:
                seen[_closed(exc)] += 1
            except Exception as exc:
                seen[_connect_failure(exc)] += 1
            return False

        async def rounds(url: str) -> float | None:
            deadline = time.perf_counter() + 120
            while time.perf_counter() < deadline:
                if all(await asyncio.gather(*(newcomer(url) for _ in range(NEWCOMERS)))):
                    return time.perf_counter() - fault_at
                await asyncio.sleep(0.2)
            return None

        found = await asyncio.gather(*(rounds(url) for url in self.stack.api_urls))
        return (None if None in found else max(t for t in found if t is not None)), seen

    async def _verify(
        self,
        result: Result,
        clients: list[FaultClient],
        checks: dict[str, tuple[int, int]],
        document_id: int,
        initial: str,
        base_revision: int,
        token: str,
    ) -> None:
        conn = await self._connect_db()
        try:
            rows = await conn.fetch(
                """
                SELECT revision, op::text AS op, client_key, seq FROM bench_committed
                WHERE document_id = $1 AND revision > $2 ORDER BY revision
                """,
                document_id,
                base_revision,
            )
        finally:
            await conn.close()
        committed: dict[tuple[str, int], int] = {}
        crc_at: dict[int, int] = {}
        wanted = {revision for revision, _ in checks.values()}
        text = initial
        for expected, row in enumerate(rows, start=base_revision + 1):
            if row["revision"] != expected:
                result.notes.append(f"committed log skips from {expected - 1} to {row['revision']}")
                break
            text = ot.apply(text, json.loads(row["op"]))
            committed[(row["client_key"].partition("/")[2], row["seq"])] = row["revision"]
            if row["revision"] in wanted:
                crc_at[row["revision"]] = _crc(text)
        head = base_revision + len(rows)

        by_name = {c.name: c for c in clients}
        never = [
            f"{name} seq {seq}"
            for name, seq in committed
            if name in by_name and seq not in by_name[name].acks
        ]
        if never:
            result.notes.append(f"{len(never)} committed ops never acked: {never[:5]}")
        for c in clients:
            for seq, revision in c.acks.items():
                result.acked += 1
                if committed.get((c.name, seq)) != revision:
                    result.lost += 1
                    if result.lost <= 5:
                        found = committed.get((c.name, seq))
                        result.notes.append(f"{c.name} seq {seq} acked {revision}, log {found}")
            state = c.client
            if state is not None and state.text == text and state.revision == head:
                result.texts_equal += 1
            for anomaly in c.anomalies[:3]:
                result.notes.append(f"{c.name}: {anomaly}")
        wrong = [n for n, (revision, crc) in checks.items() if crc_at.get(revision) != crc]
        if wrong:
            result.notes.append(f"text differed from the log once caught up: {wrong[:5]}")
        result.notes.append(f"{len(checks) - len(wrong)} texts equal to the log once caught up")
        for url in self.stack.api_urls:
            probe = await joined_state(url, token, clients[0].pid, clients[0].path)
            if probe["content"] != text or probe["revision"] != head:
                result.notes.append(f"{url} answers revision {probe['revision']}, log {head}")


# -- the report ----------------------------------------------------------------------------

LABELS = {
    "api": "SIGKILL one of 2 API nodes",
    "worker": "SIGKILL the worker",
    "redis": "restart Redis",
    "postgres": "restart PostgreSQL",
}


def _seen(counts: Counter[str]) -> str:
    if not counts:
        return "none"
    return ", ".join(f"{what} x{n}" for what, n in counts.most_common())


def table(results: list[Result]) -> str:
    lines = [
        "| fault | down for | acked ops (/s) | lost | converged after | final texts = log "
        "| reconnects | errors seen by clients | new joins on both nodes |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        converged = "never" if r.converged_s is None else f"{r.converged_s:.2f} s"
        joins = "never" if r.newcomers_s is None else f"after {r.newcomers_s:.1f} s"
        if r.newcomers_seen:
            joins += f"; failed before: {_seen(r.newcomers_seen)}"
        lines.append(
            f"| {LABELS[r.fault]} | {r.outage_s:.1f} s | {r.acked:,} ({r.acked_per_s:g}) "
            f"| {r.lost} | {converged} | {r.texts_equal}/{r.clients} | {r.reconnects} "
            f"| {_seen(r.seen)} | {joins} |"
        )
    return "\n".join(lines)


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="20 clients, short phases")
    parser.add_argument("--only", action="append", choices=FAULTS, help="a fault (repeatable)")
    parser.add_argument("--rate", type=float, default=0.5, help="edits/s per client; 0: closed")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of load before")
    parser.add_argument("--seconds", type=float, default=15, help="seconds of load after")
    parser.add_argument("--downtime", type=float, default=2, help="seconds a part stays down")
    parser.add_argument("--log", type=Path, help="keep the API and worker log (JSON lines) here")
    args = parser.parse_args()
    if args.quick:
        args.clients = 20 if args.clients == 200 else args.clients
        args.warmup, args.seconds, args.downtime = 2.0, 6.0, 1.0
    chosen = [f for f in FAULTS if not args.only or f in args.only]
    started = datetime.datetime.now(datetime.UTC)
    load_before = _load()
    results: list[Result] = []
    async with own_servers() as (redis, postgres):
        env = {**LOAD_ENV, "REDIS_URL": redis.url}
        async with running_stack(env, server_dsn=postgres.dsn, api_nodes=2) as stack:
            conn = await asyncpg.connect(stack.env["DATABASE_URL"])
            try:
                await conn.execute(AUDIT)
            finally:
                await conn.close()
            bench = Bench(
                stack,
                redis,
                postgres,
                args.clients,
                args.rate,
                args.warmup,
                args.seconds,
                args.downtime,
            )
            for fault in chosen:
                print(f"fault {fault}: {args.clients} clients ...", file=sys.stderr, flush=True)
                result = await bench.run(fault)
                results.append(result)
                print(json.dumps(result.__dict__, default=str), flush=True)
            if args.log:
                stack.log.flush()
                shutil.copyfile(stack.data_dir / "stack.log", args.log)
    print()
    print(
        f"{started:%Y-%m-%d %H:%M} UTC, {args.clients} clients, "
        f"{args.rate:g} edits/s each, fault after {args.warmup:g} s, "
        f"{args.seconds:g} s more load, parts down for {args.downtime:g} s; "
        f"load average at the start {load_before}, at the end {_load()}"
    )
    print()
    print(table(results))
    for r in results:
        for note in r.notes:
            print(f"- {r.fault}: {note}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    asyncio.run(main())
