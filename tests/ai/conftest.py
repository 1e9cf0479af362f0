"""Fixtures of the AI tests: a fake Anthropic server, workers whose provider talks to it (and
an offline one), a Docker worker and a small Python runtime image for the project containers.

Each set of fixtures has its own task queue, so the suite's default worker (offline provider)
never picks up these jobs. Containers the tests start are removed at the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import docker
import docker.errors
import httpx
import pytest
from temporalio.client import Client

import worker as worker_module
from activities.ai.anthropic_provider import AnthropicProvider
from activities.ai.offline_provider import OfflineProvider
from activities.ai.provider import Provider
from agent.serve import serve_agent
from collab.broker import RedisBroker
from files.factory import build_filesystem
from store import db
from tests.ai.fake_anthropic import FakeAnthropic
from tests.ai.pyimage import build as build_python_image
from tests.conftest import REDIS_URL, Server, api_client, free_port, serving
from tests.docker_cleanup import managed, remove_owned
from tests.support import wait_until
from vaporform.config import Config
from vaporform.settings.ai import AISettings

MODEL = "claude-sonnet-4-6"


@pytest.fixture(scope="session")
async def fake() -> AsyncIterator[FakeAnthropic]:
    server = FakeAnthropic()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def fake_reset(fake: FakeAnthropic) -> FakeAnthropic:
    fake.reset()
    return fake


@pytest.fixture(scope="session")
async def docker_client(database_url: str, run_id: str) -> AsyncIterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine: {exc}")
    before = {c.id for c in managed(client)}
    yield client
    await remove_owned(client, database_url, ai_docker_queue(run_id), before)
    client.close()


def ai_docker_queue(run_id: str) -> str:
    return f"docker-ai-{run_id}"


@pytest.fixture(scope="session")
def python_image(docker_client: docker.DockerClient) -> str:
    return build_python_image(docker_client)


@pytest.fixture(scope="session")
def ai_config(config: Config, fake: FakeAnthropic, run_id: str, python_image: str) -> Config:
    return replace(
        config,
        task_queue=f"{config.task_queue}-ai",
        ai=AISettings(
            api_key="test-key",
            base_url=fake.base_url,
            model=MODEL,
            request_timeout_s=20,
            test_rounds=1,
        ),
        containers=replace(
            config.containers,
            docker_queue=ai_docker_queue(run_id),
            default_image=python_image,
            health_timeout_s=15,
        ),
        # This suite's Docker host has an agent of its own (its workspaces, terminals).
        agent=replace(config.agent, host="127.0.0.1", port=free_port()),
    )


@pytest.fixture(scope="session")
def offline_config(ai_config: Config) -> Config:
    return replace(ai_config, task_queue=f"{ai_config.task_queue}-offline", ai=AISettings())


async def _worker(
    client: Client, config: Config, provider: Provider, executor: ThreadPoolExecutor
) -> AsyncIterator[None]:
    pool = await db.create_pool(config.database_url, min_size=1, max_size=5)
    broker = RedisBroker(REDIS_URL, prefix=config.redis_prefix)
    files = build_filesystem(config, pool)
    try:
        async with worker_module.build_worker(
            client,
            pool,
            config.task_queue,
            executor,
            files=files,
            broker=broker,
            ai_provider=provider,
            ai_budgets=worker_module.budgets_of(config.ai),
        ):
            yield
    finally:
        await provider.close()
        await broker.close()
        await pool.close()


@pytest.fixture(scope="session")
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="ai-test") as found:
        yield found


@pytest.fixture(scope="session")
async def ai_worker(
    temporal_client: Client, ai_config: Config, executor: ThreadPoolExecutor
) -> AsyncIterator[None]:
    settings = ai_config.ai
    assert settings.api_key is not None
    provider = AnthropicProvider(
        settings.api_key, settings.model, base_url=settings.base_url, timeout_s=20
    )
    async for _ in _worker(temporal_client, ai_config, provider, executor):
        yield


@pytest.fixture(scope="session")
async def offline_worker(
    temporal_client: Client, offline_config: Config, executor: ThreadPoolExecutor
) -> AsyncIterator[None]:
    async for _ in _worker(temporal_client, offline_config, OfflineProvider(), executor):
        yield


@pytest.fixture(scope="session")
async def docker_worker(
    temporal_client: Client,
    docker_client: docker.DockerClient,
    ai_config: Config,
    executor: ThreadPoolExecutor,
) -> AsyncIterator[None]:
    # With the file service, as a Docker host's worker has it: a container's workspace is
    # brought in step with PostgreSQL when it starts (the API writes no workspace).
    pool = await db.create_pool(ai_config.database_url, min_size=1, max_size=3)
    try:
        async with worker_module.build_docker_worker(
            temporal_client,
            docker_client,
            ai_config.data_dir,
            ai_config.containers.docker_queue,
            executor,
            build_filesystem(ai_config, pool),
        ):
            yield
    finally:
        await pool.close()


@pytest.fixture(scope="session")
async def ai_agent(
    temporal_client: Client, docker_client: docker.DockerClient, ai_config: Config
) -> AsyncIterator[None]:
    """The agent of this suite's Docker host: what the API writes while a container runs
    reaches its workspace through it, as a program's writes come back."""
    stop = asyncio.Event()
    pool = await db.create_pool(ai_config.database_url, min_size=1, max_size=3)
    files = build_filesystem(ai_config, pool)
    task = asyncio.create_task(
        serve_agent(
            ai_config, docker_client, stop, files=files, temporal=temporal_client, quiet=True
        )
    )
    url = ai_config.agent.default_url + "/healthz"

    async def answers() -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                return (await http.get(url)).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        await wait_until(answers, timeout=15, what="the agent")
        yield
    finally:
        stop.set()
        await task
        await pool.close()


@pytest.fixture(scope="session")
async def ai_server(
    ai_config: Config, ai_worker: None, docker_worker: None, ai_agent: None
) -> AsyncIterator[Server]:
    async with serving(ai_config) as found:
        yield found


@pytest.fixture(scope="session")
async def offline_server(
    offline_config: Config, offline_worker: None, docker_worker: None, ai_agent: None
) -> AsyncIterator[Server]:
    async with serving(offline_config) as found:
        yield found


@pytest.fixture
async def ai_http(ai_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(ai_server, timeout=60) as client:
        yield client


@pytest.fixture
async def offline_http(offline_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(offline_server, timeout=60) as client:
        yield client
