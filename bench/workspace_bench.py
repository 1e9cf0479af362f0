"""How soon a project's container sees a file written over REST, and the other way round.

    python bench/workspace_bench.py [--writes 200] [--missed 40] [--imports 100]

Starts a throwaway stack (bench/stack.py: Temporal dev server, worker with this host's agent
in it, API), with the busybox runtime image and no pool, and one project's container. The API
keeps no workspace: each write reaches the container through the agent. Measured, each after
an untimed warm-up:

- REST write -> visible: from sending `PUT .../files/f.txt` until the new content is in the
  workspace on the Docker host (the folder the container has bind-mounted at `/workspace`:
  the same inode, so what the host sees the container sees; checked once with `exec cat`);
  and the `PUT` alone;
- a missed sync: the write is committed by a file system with no sync (as when the agent's
  call failed) and announced as the API announces it; until the agent, hearing the
  announcement, has brought it in;
- container -> version: a program's write in the workspace until `GET .../files/` answers it;
- the `PUT` with no container (never started, and after it stopped): what the status look-up
  costs a write that syncs nothing.

Prints p50/p99 per line (milliseconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.grants import HEADER, agent_key, mint
from agent.workspace_sync import ROUTE
from bench.stack import bench_user, free_port, running_stack
from bench.stats import p50_p99_line
from files.factory import build_blob_store
from files.model import ChangeEvent
from files.service import FileSystem
from files.workspace import WorkspaceConflict
from store.db import create_pool
from vaporform.config import Config, load_config
from vaporform.images import ensure_built
from vaporform.temporal_setup import signal_files_changed


def show(what: str, samples: list[float]) -> None:
    print(p50_p99_line(what, samples), flush=True)


async def visible(path: Path, content: bytes, timeout: float = 30) -> float:
    """perf_counter() when `path` first holds `content` (polled every 0.2 ms)."""
    deadline = time.perf_counter() + timeout
    while True:
        try:
            if path.read_bytes() == content:
                return time.perf_counter()
        except FileNotFoundError:
            pass
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{path} never held the content")
        await asyncio.sleep(0.0002)


class Session:
    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.http = http
        self.headers = headers

    async def project(self) -> str:
        made = await self.http.post("/api/v1/projects", json={"name": "b"}, headers=self.headers)
        return str(made.json()["id"])

    async def put(self, pid: str, path: str, text: str) -> None:
        answer = await self.http.put(
            f"/api/v1/projects/{pid}/files/{path}", json={"content": text}, headers=self.headers
        )
        assert answer.status_code in (200, 201), answer.text

    async def start(self, pid: str) -> dict[str, object]:
        for _ in range(100):  # the worker's agent may still be starting
            started = await self.http.post(
                f"/api/v1/projects/{pid}/container", json={}, headers=self.headers
            )
            if started.json().get("status") == "running":
                return dict(started.json())
            await asyncio.sleep(0.2)
        raise AssertionError(started.text)


async def rest_writes(s: Session, pid: str, root: Path, count: int) -> tuple[list[float], ...]:
    target = root / "f.txt"
    puts, seen = [], []
    for index in range(count + 20):
        text = f"write {index} {uuid.uuid4().hex}\n"
        started = time.perf_counter()
        waiting = asyncio.create_task(visible(target, text.encode()))
        await s.put(pid, "f.txt", text)
        answered = time.perf_counter()
        shown = await waiting
        if index >= 20:
            puts.append((answered - started) * 1000)
            seen.append((shown - started) * 1000)
    return puts, seen


async def missed_syncs(config: Config, pid: str, root: Path, count: int) -> list[float]:
    from temporalio.client import Client

    temporal = await Client.connect(config.temporal_address, namespace=config.temporal_namespace)
    pool = await create_pool(config.database_url, min_size=1, max_size=2)

    async def nowhere(project_id: uuid.UUID, paths: Sequence[str]) -> list[WorkspaceConflict]:
        return []

    async def announce(event: ChangeEvent) -> None:
        await signal_files_changed(
            temporal, config.task_queue, str(event.project_id), list(event.paths), "api"
        )

    fs = FileSystem(
        pool, build_blob_store(config), root / "unused", workspace_sync=nowhere, notifier=announce
    )
    samples = []
    try:
        for index in range(count + 3):
            # A path of its own each time: rewriting one path, the agent's reconcile of its own
            # previous write (the watcher's echo) would find the next version and bring it in.
            path, content = f"missed/{index}.txt", f"missed {uuid.uuid4().hex}\n".encode()
            started = time.perf_counter()
            await fs.write(uuid.UUID(pid), path, content, author_id=None)
            shown = await visible(root / path, content)
            if index >= 3:
                samples.append((shown - started) * 1000)
    finally:
        await pool.close()
    return samples


async def imports(s: Session, pid: str, root: Path, count: int) -> list[float]:
    samples = []
    for index in range(count + 5):
        text = f"program {index} {uuid.uuid4().hex}\n"
        started = time.perf_counter()
        (root / "p.txt").write_text(text)
        while True:
            got = await s.http.get(f"/api/v1/projects/{pid}/files/p.txt", headers=s.headers)
            if got.status_code == 200 and got.json()["content"] == text:
                break
            await asyncio.sleep(0.002)
        if index >= 5:
            samples.append((time.perf_counter() - started) * 1000)
    return samples


async def straight_syncs(config: Config, pid: str, container_id: str, count: int) -> list[float]:
    """The agent's sync route alone, with nothing to do (the API's hop without the API)."""
    samples = []
    async with httpx.AsyncClient(timeout=30) as client:
        for index in range(count + 20):
            grant = mint(
                agent_key(config),
                issuer=config.jwt.issuer,
                user_id="bench",
                project_id=pid,
                container_id=container_id,
                purpose="workspace",
            )
            started = time.perf_counter()
            answer = await client.post(
                config.agent.default_url + ROUTE, json={"paths": ["f.txt"]}, headers={HEADER: grant}
            )
            assert answer.status_code == 200, answer.text
            if index >= 20:
                samples.append((time.perf_counter() - started) * 1000)
    return samples


async def plain_puts(s: Session, pid: str, count: int) -> list[float]:
    samples = []
    for index in range(count + 20):
        started = time.perf_counter()
        await s.put(pid, "g.txt", f"plain {index}\n")
        if index >= 20:
            samples.append((time.perf_counter() - started) * 1000)
    return samples


async def measure(base: str, config: Config, args: argparse.Namespace) -> int:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        s = Session(http, await bench_user(http))
        pid = await s.project()
        status = await s.start(pid)
        root = config.data_dir / "workspaces" / pid
        try:
            print(f"stack: API {base}, agent {config.agent.default_url}")
            puts, seen = await rest_writes(s, pid, root, args.writes)
            shown = await http.post(
                f"/api/v1/projects/{pid}/container/exec",
                json={"command": ["cat", "/workspace/f.txt"]},
                headers=s.headers,
            )
            assert shown.json()["stdout"] == (root / "f.txt").read_text(), shown.text
            show("REST write -> visible in the container's workspace", seen)
            show("the PUT alone (commit + sync through the agent)", puts)
            direct = await straight_syncs(config, pid, str(status["container_id"]), args.writes)
            show("the agent's sync route alone, nothing to write", direct)
            missed = await missed_syncs(config, pid, root, args.missed)
            show("missed sync -> visible (the agent hears the announcement)", missed)
            imported = await imports(s, pid, root, args.imports)
            show("program writes a file -> GET answers it", imported)
        finally:
            await http.post(f"/api/v1/projects/{pid}/container/stop", headers=s.headers)
        never = await plain_puts(s, await s.project(), args.writes)
        show("PUT, no container ever (status look-up, no sync)", never)
        stopped = await plain_puts(s, pid, args.writes)
        show("PUT after the container stopped", stopped)
        print(json.dumps({"loadavg": Path("/proc/loadavg").read_text().split()[:3]}))
    return 0


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--missed", type=int, default=40)
    parser.add_argument("--imports", type=int, default=100)
    args = parser.parse_args()
    import docker

    engine = docker.from_env()
    ensure_built(engine, "busybox", progress=lambda _: None)
    engine.close()
    extra = {
        "VAPORFORM_CONTAINER_IMAGE": "vaporform/runtime-busybox:latest",
        "VAPORFORM_POOL_SIZE": "0",
        "VAPORFORM_DOCKER_QUEUE": f"docker-bench-{uuid.uuid4().hex[:8]}",
        "VAPORFORM_AGENT_PORT": str(free_port()),
        "VAPORFORM_JWT_SECRET": "bench-secret-" + uuid.uuid4().hex * 2,
        # The agent follows the announcements over Redis (without it, a missed sync waits for
        # the next reconcile).
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    }
    async with running_stack(extra) as st:
        return await measure(st.base_url, load_config(st.env), args)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
