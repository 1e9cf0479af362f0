"""Start a throwaway stack for a benchmark: fresh database, Temporal dev server, worker, API.

Each part runs in its own process, as in production, so the load generator measures the
server over real sockets rather than sharing its event loop.

`stack()` yields the API's base URL. `running_stack()` yields a `Stack`, for benches that also
need the Temporal address, the task queue or the worker process (to SIGKILL it and start a
replacement with the same environment), or several API nodes on one database (to SIGKILL one
and start it again on its port).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from store import db
from vaporform.commands.startup import (
    prepare_database,
    temporal_binary,
    wait_for_http,
    wait_for_temporal,
)
from vaporform.config import load_config

ME = [sys.executable, "-m", "vaporform.cli"]


async def bench_user(http: httpx.AsyncClient, prefix: str = "bench") -> dict[str, str]:
    """A fresh account on the API `http` talks to: the headers that act as it."""
    answer = await http.post(
        "/api/v1/auth/register",
        json={
            "email": f"{prefix}-{uuid.uuid4().hex[:8]}@example.com",
            "password": "correct horse battery",
            "name": "Bench",
        },
    )
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=15)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


@dataclass
class Stack:
    base_url: str  # the first API node
    temporal_address: str
    task_queue: str
    env: dict[str, str]  # the environment of the worker and the API
    data_dir: Path
    log: IO[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    api_ports: list[int] = field(default_factory=list)
    # The API process serving each port (the one started last), None before it is started.
    apis: list[subprocess.Popen[bytes] | None] = field(default_factory=list)

    @property
    def api_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.api_ports]

    async def start_api(self, node: int) -> subprocess.Popen[bytes]:
        """Start API node `node` on its port (again, after `kill_api`); return once ready."""
        env = {**self.env, "VAPORFORM_API_PORT": str(self.api_ports[node])}
        process = subprocess.Popen([*ME, "api"], env=env, stdout=self.log, stderr=self.log)
        self.apis[node] = process
        await wait_for_http(self.api_urls[node] + "/readyz", 30)
        return process

    def kill_api(self, node: int) -> None:
        """SIGKILL API node `node` (no graceful shutdown) and reap it."""
        process = self.apis[node]
        assert process is not None
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    @property
    def worker(self) -> subprocess.Popen[bytes]:
        """The worker process started last."""
        return self.workers[-1]

    def start_worker(self) -> subprocess.Popen[bytes]:
        """Start another `vaporform worker` process with the stack's environment."""
        process = subprocess.Popen([*ME, "worker"], env=self.env, stdout=self.log, stderr=self.log)
        self.workers.append(process)
        return process

    def kill_worker(self) -> None:
        """SIGKILL the current worker process (no graceful shutdown) and reap it."""
        self.worker.send_signal(signal.SIGKILL)
        self.worker.wait(timeout=10)


@asynccontextmanager
async def running_stack(
    extra_env: dict[str, str] | None = None, *, server_dsn: str | None = None, api_nodes: int = 1
) -> AsyncIterator[Stack]:
    """Yield the running `Stack`; everything is stopped and the database dropped afterwards.

    `server_dsn` names the PostgreSQL server to create the bench database in (default:
    `DATABASE_URL`); `api_nodes` API processes share the database, Redis and data dir.
    """
    run = uuid.uuid4().hex[:8]
    data = Path(tempfile.mkdtemp(prefix="vf-bench-"))
    base_dsn = server_dsn or os.environ.get(
        "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/vaporform"
    )
    temporal_port = free_port()
    api_ports = [free_port() for _ in range(api_nodes)]
    api_port = api_ports[0]
    env = {
        **os.environ,
        "DATABASE_URL": db.with_database(base_dsn, f"vaporform_bench_{run}"),
        "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "VAPORFORM_DATA_DIR": str(data),
        "VAPORFORM_API_PORT": str(api_port),
        "VAPORFORM_TASK_QUEUE": f"bench-{run}",
        "VAPORFORM_LOG_LEVEL": "WARNING",
        "VAPORFORM_REDIS_PREFIX": f"vf-bench-{run}:",
        **(extra_env or {}),
    }
    config = load_config(env)
    await prepare_database(config)
    temporal: subprocess.Popen[bytes] | None = None
    log = open(data / "stack.log", "ab")  # noqa: SIM115 - closed with the children
    found = Stack(
        base_url=f"http://127.0.0.1:{api_port}",
        temporal_address=config.temporal_address,
        task_queue=config.task_queue,
        env=env,
        data_dir=data,
        log=log,
        api_ports=api_ports,
        apis=[None] * api_nodes,
    )
    try:
        temporal = subprocess.Popen(
            [
                temporal_binary(),
                "server",
                "start-dev",
                "--ip",
                "127.0.0.1",
                "--port",
                str(temporal_port),
                "--headless",
                "--log-level",
                "error",
                "--search-attribute",
                "ProjectId=Keyword",
                "--search-attribute",
                "UserId=Keyword",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await wait_for_temporal(config.temporal_address, 30)
        found.start_worker()
        for node in range(api_nodes):
            await found.start_api(node)
        yield found
    finally:
        # API first, then the workers, then Temporal: each stops while what it talks to is up.
        for child in [*found.apis, *reversed(found.workers), temporal]:
            if child is not None:
                _stop(child)
        log.close()
        await db.drop_database(config.database_url)
        shutil.rmtree(data, ignore_errors=True)


@asynccontextmanager
async def stack(extra_env: dict[str, str] | None = None) -> AsyncIterator[str]:
    """Yield the API's base URL; everything is stopped and the database dropped afterwards."""
    async with running_stack(extra_env) as found:
        yield found.base_url
