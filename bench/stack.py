"""Start a throwaway stack for a benchmark: fresh database, Temporal dev server, worker, API.

Each part runs in its own process, as in production, so the load generator measures the
server over real sockets rather than sharing its event loop.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from store import db
from vaporform.cli import prepare_database, temporal_binary, wait_for_http, wait_for_temporal
from vaporform.config import load_config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def stack(extra_env: dict[str, str] | None = None) -> AsyncIterator[str]:
    """Yield the API's base URL; everything is stopped and the database dropped afterwards."""
    run = uuid.uuid4().hex[:8]
    data = Path(tempfile.mkdtemp(prefix="vf-bench-"))
    base_dsn = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/vaporform")
    temporal_port, api_port = free_port(), free_port()
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
    children: list[subprocess.Popen[bytes]] = []
    try:
        children.append(
            subprocess.Popen(
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
        )
        await wait_for_temporal(config.temporal_address, 30)
        me = [sys.executable, "-m", "vaporform.cli"]
        log = open(data / "stack.log", "ab")  # noqa: SIM115 - closed with the children
        for part in ("worker", "api"):
            children.append(subprocess.Popen([*me, part], env=env, stdout=log, stderr=log))
        base = f"http://127.0.0.1:{api_port}"
        await wait_for_http(base + "/readyz", 30)
        yield base
    finally:
        # API first, then the worker, then Temporal: each stops while what it talks to is up.
        for child in reversed(children):
            child.terminate()
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        await db.drop_database(config.database_url)
        shutil.rmtree(data, ignore_errors=True)
