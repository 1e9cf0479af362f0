"""What connections cost the API: joining a crowd, holding idle sockets, noticing dead peers.

    python bench/connections_bench.py --joins 1000 --files 250   # 1000 people, one project
    python bench/connections_bench.py --idle 2000                # memory with idle sockets
    python bench/connections_bench.py --dead-peer                # time to notice a dead peer

`--joins`: N clients connect and join (round robin over F files of one project, at most
`--concurrency` handshakes in flight). Prints the seconds until every client has its `joined`,
until the presence fan-out has settled (everyone knows who has its file open and nothing more
arrives: the time of the last frame), the frames and bytes the clients received, the API's CPU
seconds meanwhile and its memory after (see `--idle`). Then every other client disconnects at
once: seconds until those who stay heard each leave, and `ping` round trips meanwhile.

`--idle`: N connections, each joined to its project's file (20 people per project, or all in
one with `--one-project`), then quiet. Prints the API's memory before and after: the
proportional set size of its process tree (Granian serves from a forked worker process that
shares its parent's pages) and the RSS of each process.

`--dead-peer`: one joined client that keeps reading and another that only reads, then the
network to the reader vanishes (a netfilter rule drops its packets, so nothing answers: no
RST, no ACK). Prints how long until its presence is gone for the first. Needs root (nft).

Without --url each starts its own stack (bench/stack.py), served by `VAPORFORM_SERVER`
(default uvicorn).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import running_stack
from web.serving import server_name

LOAD_ENV = {
    "VAPORFORM_COLLAB_OP_RATE": "1000000",
    "VAPORFORM_COLLAB_OP_BURST": "1000000",
    "VAPORFORM_REGISTER_PER_IP": "1000000",
}


# -- the API's processes ---------------------------------------------------------------------


def api_processes(port: int) -> list[int]:
    """The `vaporform api` process serving `port` and its descendants (server workers)."""
    parents: dict[int, int] = {}
    roots: list[int] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        pid = int(proc.name)
        parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
        mine = f"VAPORFORM_API_PORT={port}".encode() in environ
        if b"vaporform.cli" in cmdline and b"api" in cmdline and mine:
            roots.append(pid)
    found = list(roots)
    for pid in found:
        found.extend(c for c, parent in parents.items() if parent == pid and c not in found)
    return found


def memory_mib(pids: list[int], field: str = "Pss") -> float:
    """The processes' memory: `Pss` counts pages they share (a forked worker shares its
    parent's imports) once, `Rss` in every process."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


def cpu_s(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return round(total / ticks, 2)


def own_cpu_s() -> float:
    """CPU seconds of this process (the clients): when it nears the wall time, it measures
    itself."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- clients ---------------------------------------------------------------------------------


async def setup(http: httpx.AsyncClient, projects: int, files: int) -> tuple[str, list[str], str]:
    """A user, `projects` projects and `files` small files in each; (token, project ids,
    the files' name pattern)."""
    email = f"bench-{os.urandom(6).hex()}@example.com"
    body = {"email": email, "password": "correct horse battery staple", "name": "Bench"}
    token = (await http.post("/api/v1/auth/register", json=body)).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    pids = []
    for i in range(projects):
        made = await http.post("/api/v1/projects", json={"name": f"crowd {i}"}, headers=headers)
        pid = made.json()["id"]
        pids.append(pid)
        for f in range(files):
            put = await http.put(
                f"/api/v1/projects/{pid}/files/f{f}.txt",
                json={"content": f"file {f}\n"},
                headers=headers,
            )
            put.raise_for_status()
    return token, pids, "f{}.txt"


def collab_url(url: str, pid: str) -> str:
    return url.replace("http://", "ws://") + f"/api/v1/projects/{pid}/collab"


class Member(asyncio.Protocol):
    """One connection that joins a file and counts what it receives.

    A minimal WebSocket client (handshake, unmasked server frames, masked client frames): the
    `websockets` library costs the generator more CPU per frame than the server spends, and a
    thousand of them in one process would measure themselves. Only `parse` members decode
    every message (to check who they have heard of); the others decode until their `joined`.
    """

    def __init__(self, url: str, token: str, path: str, *, parse: bool = True) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.target, self.token, self.path, self.parse = parts.path, token, path, parse
        self.transport: asyncio.Transport | None = None
        self.session_id = ""
        self.others: set[str] = set()
        self.gone: set[str] = set()  # sessions this member heard leave the project
        self.pong: asyncio.Future[None] | None = None
        self.joined_at = 0.0
        self.frames = 0
        self.bytes = 0
        self.last_frame = 0.0
        self.closed_code: int | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._buffer = bytearray()
        self._open = False

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: self, self.host, self.port)
        assert self.transport is not None
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            (
                f"GET {self.target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Bearer {self.token}\r\n\r\n"
            ).encode()
        )
        await asyncio.wait_for(self._upgraded, 120)
        self.send_text(json.dumps({"id": "j", "type": "join", "payload": {"path": self.path}}))

    def send_text(self, text: str) -> None:
        self.send_frame(0x1, text.encode())

    def send_frame(self, opcode: int, data: bytes) -> None:
        assert self.transport is not None
        mask = os.urandom(4)
        size = len(data)
        head = bytes([0x80 | opcode])
        if size < 126:
            head += bytes([0x80 | size])
        elif size < 65536:
            head += bytes([0x80 | 126]) + size.to_bytes(2, "big")
        else:
            head += bytes([0x80 | 127]) + size.to_bytes(8, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.transport.write(head + mask + masked)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._open:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self._buffer[:end]).split(b"\r\n", 1)[0]
            del self._buffer[: end + 4]
            if b" 101 " not in status:
                self._upgraded.set_exception(ConnectionError(status.decode()))
                return
            self._open = True
            self._upgraded.set_result(None)
        self._frames()

    def _frames(self) -> None:
        buffer = self._buffer
        while len(buffer) >= 2:
            opcode, size, at = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            if size == 126:
                if len(buffer) < 4:
                    return
                size, at = int.from_bytes(buffer[2:4], "big"), 4
            elif size == 127:
                if len(buffer) < 10:
                    return
                size, at = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < at + size:
                return
            payload = bytes(buffer[at : at + size])
            del buffer[: at + size]
            self._frame(opcode, payload)

    def _frame(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x9:  # ping (uvicorn's keepalive): answered with the same bytes
            self.send_frame(0xA, payload)
            return
        if opcode == 0x8:
            self.closed_code = int.from_bytes(payload[:2], "big") if payload else 1005
            return
        self.frames += 1
        self.bytes += len(payload)
        self.last_frame = time.perf_counter()
        if self.parse or not self.joined_at:
            decoded = orjson.loads(payload)
            for message in decoded if isinstance(decoded, list) else [decoded]:
                self._handle(message)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed_code is None and self._open:
            self.closed_code = 1006
        if not self._upgraded.done():
            self._upgraded.set_exception(exc or ConnectionError("closed"))
        if not self.done.done():
            self.done.set_result(None)

    def _handle(self, message: dict[str, Any]) -> None:
        kind, payload = message["type"], message["payload"]
        if kind == "joined":
            self.session_id = message["session_id"]
            self.joined_at = time.perf_counter()
            self.others.update(p["session_id"] for p in payload["participants"])
        elif kind == "presence":
            who = payload["participant"]
            if payload["event"] == "gone":
                self.gone.add(who["session_id"])
            # Who has my file open: what `joined` lists, kept up to date by presence.
            if payload["event"] == "gone" or self.path not in who["paths"]:
                self.others.discard(who["session_id"])
            else:
                self.others.add(who["session_id"])
        elif kind == "pong" and self.pong is not None and not self.pong.done():
            self.pong.set_result(None)

    async def ping(self) -> float:
        """Milliseconds for a `ping` to come back as `pong` (a stalled API loop shows here)."""
        self.pong = asyncio.get_running_loop().create_future()
        began = time.perf_counter()
        self.send_text('{"type": "ping"}')
        await asyncio.wait_for(self.pong, 60)
        return (time.perf_counter() - began) * 1000

    def knows(self, count: int) -> bool:
        """At least `count` others have this member's file open, as far as it has heard."""
        return not self.parse or len(self.others - {self.session_id}) >= count

    async def close(self) -> None:
        if self.transport is not None and not self.done.done():
            self.transport.close()
            await self.done


async def wait_for(check: Callable[[], bool], timeout: float, poll: float = 0.05) -> bool:
    deadline = time.perf_counter() + timeout
    while not check():
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(poll)
    return True


async def quiet(members: list[Member], seconds: float) -> None:
    """Until no member has received a frame for `seconds`."""
    await wait_for(lambda: time.perf_counter() - max(m.last_frame for m in members) >= seconds, 600)


async def joins(url: str, clients: int, files: int, concurrency: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        token, (pid,), name = await setup(http, 1, files)
    pids = api_processes(int(url.rsplit(":", 1)[1]))
    # One member in 20 decodes everything, to check that presence reached everyone.
    members = [
        Member(collab_url(url, pid), token, name.format(i % files), parse=i % 20 == 0)
        for i in range(clients)
    ]
    gate = asyncio.Semaphore(concurrency)
    cpu_before, own_before = cpu_s(pids), own_cpu_s()

    async def start(member: Member) -> None:
        async with gate:
            await member.connect()

    began = time.perf_counter()
    await asyncio.gather(*(start(m) for m in members))
    connected = time.perf_counter() - began
    all_joined = await wait_for(lambda: all(m.joined_at for m in members), 600)
    joined = max(m.joined_at for m in members) - began if all_joined else None
    per_file = clients // files
    settled_ok = await wait_for(
        lambda: all(m.knows(per_file - 1) or m.closed_code is not None for m in members), 600
    )
    # Then until nothing more arrives (the presence fan-out to the whole project is done).
    await quiet(members, 1.0)
    settled_ok = settled_ok and all(m.closed_code is None for m in members)
    settled = max(m.last_frame for m in members) - began if settled_ok else None
    result: dict[str, Any] = {
        "server": server_name(),
        "clients": clients,
        "files": files,
        "connected_s": round(connected, 2),
        "all_joined_s": None if joined is None else round(joined, 2),
        "presence_settled_s": None if settled is None else round(settled, 2),
        "frames_received": sum(m.frames for m in members),
        "mib_received": round(sum(m.bytes for m in members) / 2**20, 1),
        "api_cpu_s": round(cpu_s(pids) - cpu_before, 2),
        "bench_cpu_s": round(own_cpu_s() - own_before, 2),
        "api_pss_mib": memory_mib(pids),
        "closed": closed_codes(members),
    }
    result.update(await leave_at_once(members, pids))
    print(json.dumps(result), flush=True)
    await asyncio.gather(*(m.close() for m in members), return_exceptions=True)
    return result


async def leave_at_once(members: list[Member], pids: list[int]) -> dict[str, Any]:
    """Every other member disconnects at once. Seconds until those who stay (the ones that
    decode) heard every `gone`, and one who stays pinging the API meanwhile: the round trips
    show how long the loop stopped for the others."""
    leaving, staying = members[1::2], members[0::2]
    listeners = [m for m in staying if m.parse]
    probe = listeners[0]
    rtts: list[float] = []
    cpu_before = cpu_s(pids)
    began = time.perf_counter()
    pinging = True

    async def pings() -> None:
        while pinging:
            rtts.append(await probe.ping())
            await asyncio.sleep(0.005)

    pinger = asyncio.create_task(pings())
    for member in leaving:
        if member.transport is not None:
            member.transport.close()
    ids = {m.session_id for m in leaving}
    heard = await wait_for(lambda: all(ids <= m.gone for m in listeners), 600)
    took = time.perf_counter() - began
    pinging = False
    await pinger
    rtts.sort()
    return {
        "left_at_once": len(leaving),
        "all_heard_gone_s": round(took, 2) if heard else None,
        "leave_api_cpu_s": round(cpu_s(pids) - cpu_before, 2),
        "leave_ping_ms_p50_p99_max": [
            round(rtts[len(rtts) // 2], 1),
            round(rtts[int(len(rtts) * 0.99)], 1),
            round(rtts[-1], 1),
        ],
    }


def closed_codes(members: list[Member]) -> dict[str, int]:
    """How many connections the server closed, by close code."""
    found: dict[str, int] = {}
    for member in members:
        if member.closed_code is not None:
            found[str(member.closed_code)] = found.get(str(member.closed_code), 0) + 1
    return found


async def idle(url: str, connections: int, per_project: int, one_project: bool) -> dict[str, Any]:
    projects = 1 if one_project else max(1, connections // per_project)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        token, pids, name = await setup(http, projects, 1)
    api = api_processes(int(url.rsplit(":", 1)[1]))
    before = memory_mib(api)
    members = [
        Member(collab_url(url, pids[i % projects]), token, name.format(0))
        for i in range(connections)
    ]
    for start in range(0, connections, 100):
        await asyncio.gather(*(m.connect() for m in members[start : start + 100]))
    await wait_for(lambda: all(m.joined_at for m in members), 300)
    # Let presence settle (each hears of the others in its file), then stay quiet.
    others = connections // projects - 1
    await wait_for(lambda: all(m.knows(others) for m in members), 300)
    await quiet(members, 2.0)
    result: dict[str, Any] = {
        "server": server_name(),
        "idle_connections": sum(1 for m in members if m.closed_code is None),
        "closed": closed_codes(members),
        "projects": projects,
        "api_processes": len(api),
        "api_pss_mib_before": before,
        "api_pss_mib": memory_mib(api),
        "api_rss_mib": {pid: memory_mib([pid], "Rss") for pid in api},
    }
    print(json.dumps(result), flush=True)
    await asyncio.gather(*(m.close() for m in members), return_exceptions=True)
    return result


# -- a dead peer -----------------------------------------------------------------------------

TABLE = "vaporform_bench_dead_peer"


def drop_port(port: int) -> None:
    rules = (
        f"add table inet {TABLE}\n"
        f"add chain inet {TABLE} input {{ type filter hook input priority -10 ; }}\n"
        f"add rule inet {TABLE} input tcp sport {port} drop\n"
        f"add rule inet {TABLE} input tcp dport {port} drop\n"
    )
    subprocess.run(["nft", "-f", "-"], input=rules.encode(), check=True)


def undrop() -> None:
    subprocess.run(["nft", "delete", "table", "inet", TABLE], check=False, capture_output=True)


async def dead_peer(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        token, (pid,), name = await setup(http, 1, 1)
    watcher = Member(collab_url(url, pid), token, name.format(0))
    reader = Member(collab_url(url, pid), token, name.format(0))
    for member in (watcher, reader):
        await member.connect()
    await wait_for(lambda: watcher.knows(1) and reader.joined_at > 0, 30)
    assert reader.transport is not None
    port = reader.transport.get_extra_info("sockname")[1]
    drop_port(port)
    began = time.perf_counter()
    try:
        await wait_for(
            lambda: not watcher.knows(1) or watcher.closed_code is not None, 1200, poll=0.1
        )
    finally:
        undrop()
    noticed = not watcher.knows(1) and watcher.closed_code is None
    result = {
        "server": server_name(),
        "dead_peer_noticed_s": round(time.perf_counter() - began, 1) if noticed else None,
        # A server that drops silent clients drops the watcher too.
        "watcher_closed": watcher.closed_code,
    }
    print(json.dumps(result), flush=True)
    reader.transport.abort()
    await watcher.close()
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="a running API (default: start a throwaway stack)")
    parser.add_argument("--joins", type=int, default=0, help="N clients join one project")
    parser.add_argument("--files", type=int, default=250, help="files the --joins clients open")
    parser.add_argument("--concurrency", type=int, default=100, help="handshakes in flight")
    parser.add_argument("--idle", type=int, default=0, help="N idle connections")
    parser.add_argument("--per-project", type=int, default=20)
    parser.add_argument("--one-project", action="store_true", help="--idle: all in one project")
    parser.add_argument("--dead-peer", action="store_true", help="time to notice a dead peer")
    args = parser.parse_args()

    async def everything(url: str) -> None:
        if args.joins:
            await joins(url, args.joins, args.files, args.concurrency)
        if args.idle:
            await idle(url, args.idle, args.per_project, args.one_project)
        if args.dead_peer:
            await dead_peer(url)

    if args.url:
        await everything(args.url)
        return
    async with running_stack(LOAD_ENV) as found:
        await everything(found.base_url)


if __name__ == "__main__":
    asyncio.run(main())
