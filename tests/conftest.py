"""Session fixtures: a fresh database, the Temporal dev server, a worker and a real API server.

Everything is real (PostgreSQL, Redis, Temporal, HTTP over a socket); each run gets its own
database, Redis key prefix and task queue so runs never collide.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from quart import Quart
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

import worker as worker_module
from collab.broker import RedisBroker
from files.factory import build_filesystem
from store import db
from store.migrate import migrate
from tests.support import wait_until
from vaporform.commands.startup import temporal_binary
from vaporform.config import Config
from vaporform.outbox_relay import OutboxRelay
from vaporform.settings.auth import JWTSettings, RateLimits
from web.app import create_app
from web.serving import serve_in_process
from workflows.shared import PROJECT_ID, USER_ID

ADMIN_DSN = os.environ.get(
    "VAPORFORM_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("VAPORFORM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:12]


async def migrated_database(url: str) -> None:
    """Create the database named in `url` if missing and bring it to the latest schema."""
    await db.ensure_database(url)
    conn = await db.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()


@asynccontextmanager
async def fresh_database(name: str) -> AsyncIterator[str]:
    """The URL of a new, migrated database called `name`, dropped on the way out."""
    url = db.with_database(ADMIN_DSN, name)
    await migrated_database(url)
    try:
        yield url
    finally:
        await db.drop_database(url)


@pytest.fixture(scope="session")
async def database_url(run_id: str) -> AsyncIterator[str]:
    async with fresh_database(f"vaporform_test_{run_id}") as url:
        yield url


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    path = temporal_binary()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=path,
        search_attributes=[PROJECT_ID, USER_ID],
        dev_server_log_level="error",
        ui=False,
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def config(
    run_id: str, database_url: str, temporal_env: WorkflowEnvironment, data_dir: Path
) -> Config:
    return Config(
        database_url=database_url,
        redis_url=REDIS_URL,
        redis_prefix=f"vf-test-{run_id}:",
        temporal_address=temporal_env.client.service_client.config.target_host,
        task_queue=f"vf-test-{run_id}",
        data_dir=data_dir,
        jwt=JWTSettings(secret="test-secret-" + run_id * 4),
        # Cheap hashing keeps the suite fast; the bench measures the production cost.
        argon2_time_cost=1,
        argon2_memory_kib=8192,
        argon2_parallelism=1,
        # Every test logs in from 127.0.0.1: keep the per-address limit out of their way;
        # tests/web/test_rate_limits.py checks both limits on apps of its own.
        rate_limits=RateLimits(login_per_ip=100_000, register_per_ip=100_000),
        db_pool_min=1,
        db_pool_max=10,
    )


@pytest.fixture(scope="session")
def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture(scope="session")
async def worker(temporal_client: Client, config: Config) -> AsyncIterator[None]:
    pool = await db.create_pool(config.database_url, min_size=1, max_size=5)
    broker = RedisBroker(REDIS_URL, prefix=config.redis_prefix)
    files = build_filesystem(config, pool)
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with worker_module.build_worker(
            temporal_client, pool, config.task_queue, executor, files=files, broker=broker
        ):
            stop = asyncio.Event()
            relay = asyncio.create_task(
                OutboxRelay(pool, temporal_client, config.task_queue).run(stop)
            )
            yield
            stop.set()
            await relay
    await broker.close()
    await pool.close()


class Server:
    def __init__(self, app: Quart, port: int) -> None:
        self.app = app
        self.base_url = f"http://127.0.0.1:{port}"


@asynccontextmanager
async def serving(config: Config) -> AsyncIterator[Server]:
    """An API server for `config` on a free port, answering /healthz, stopped when the block
    ends."""
    port = free_port()
    bound = replace(config, api_host="127.0.0.1", api_port=port)
    app = create_app(bound)
    stop = asyncio.Event()
    task = asyncio.create_task(serve_in_process(app, bound, stop))
    server = Server(app, port)

    async def healthy() -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(server.base_url + "/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    try:
        await wait_until(healthy, timeout=15, what="the API server to answer /healthz")
        yield server
    finally:
        stop.set()
        await task


@asynccontextmanager
async def api_client(
    target: Server | Config, *, timeout: float = 30
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the API: on a running `Server`, or on one served for a `Config` for as
    long as the block lasts. Closed (and that server stopped) when the block ends."""
    if isinstance(target, Server):
        async with httpx.AsyncClient(base_url=target.base_url, timeout=timeout) as client:
            yield client
        return
    async with serving(target) as server, api_client(server, timeout=timeout) as client:
        yield client


@pytest.fixture(scope="session")
async def server(config: Config, worker: None) -> AsyncIterator[Server]:
    async with serving(config) as found:
        yield found


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(server) as client:
        yield client
