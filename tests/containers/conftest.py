"""Fixtures of the container tests: the busybox runtime image, a Docker worker and an API.

Everything is real: the Docker engine, the Temporal dev server, PostgreSQL. The test image is
built once per machine and cached by its tag. Every container a test creates is removed after
it (they all carry our labels), whether the test passed or not.
"""

from __future__ import annotations

import asyncio
import io
import tarfile
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import docker
import docker.errors
import httpx
import pytest
from temporalio.client import Client

from agent.serve import serve_agent
from files.factory import build_filesystem
from files.service import FileSystem
from store import db
from tests.conftest import Server, api_client, free_port, serving
from tests.docker_cleanup import managed, remove_owned
from tests.support import wait_until
from vaporform.config import Config
from vaporform.images import ensure_built, has_image
from worker import build_docker_worker

TEST_IMAGE = "vaporform/runtime-busybox:latest"
# An image with no `sleep`: its container is created, then cannot start.
BROKEN_IMAGE = "vaporform/runtime-broken:test"


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def runtime_image(docker_client: docker.DockerClient) -> str:
    ensure_built(docker_client, "busybox", progress=lambda _: None)
    return TEST_IMAGE


@pytest.fixture(scope="session")
def broken_image(docker_client: docker.DockerClient) -> str:
    if not has_image(docker_client, BROKEN_IMAGE):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo("README")
            info.size = 5
            tar.addfile(info, io.BytesIO(b"empty"))
        repository, _, tag = BROKEN_IMAGE.rpartition(":")
        docker_client.api.import_image_from_data(buffer.getvalue(), repository=repository, tag=tag)
    return BROKEN_IMAGE


@pytest.fixture(scope="session")
def docker_queue(run_id: str) -> str:
    return f"docker-test-{run_id}"


@pytest.fixture(scope="session")
def container_config(config: Config, docker_queue: str, runtime_image: str) -> Config:
    return replace(
        config,
        # This run's agent (the `agent` fixture) and preview origin, on free ports.
        agent=replace(config.agent, host="127.0.0.1", port=free_port()),
        previews=replace(
            config.previews,
            port=(preview_port := free_port()),
            url=f"http://{{id}}.preview.localhost:{preview_port}",
        ),
        containers=replace(
            config.containers,
            docker_queue=docker_queue,
            default_image=runtime_image,
            health_timeout_s=10,
            # The pool has tests of its own (test_pool.py); here every start is cold.
            pool_size=0,
        ),
    )


@pytest.fixture(scope="session")
async def files(container_config: Config) -> AsyncIterator[FileSystem]:
    pool = await db.create_pool(container_config.database_url, min_size=1, max_size=5)
    yield build_filesystem(container_config, pool)
    await pool.close()


@pytest.fixture(scope="session")
async def docker_worker(
    temporal_client: Client,
    docker_client: docker.DockerClient,
    container_config: Config,
    files: FileSystem,
) -> AsyncIterator[None]:
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="docker") as executor:
        async with build_docker_worker(
            temporal_client,
            docker_client,
            container_config.data_dir,
            container_config.containers.docker_queue,
            executor,
            files,
        ):
            yield


@pytest.fixture(scope="session")
async def agent(container_config: Config, docker_client: docker.DockerClient) -> AsyncIterator[str]:
    """This Docker host's agent (terminals, previews), as `vaporform agent` serves it."""
    stop = asyncio.Event()
    task = asyncio.create_task(serve_agent(container_config, docker_client, stop, quiet=True))
    url = container_config.agent.default_url

    async def healthy() -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(url + "/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    try:
        await wait_until(healthy, timeout=15, what="the agent to answer /healthz")
        yield url
    finally:
        stop.set()
        await task


@pytest.fixture(scope="session")
async def container_server(
    container_config: Config, worker: None, docker_worker: None, agent: str
) -> AsyncIterator[Server]:
    async with serving(container_config) as found:
        yield found


@pytest.fixture
async def http(container_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(container_server, timeout=60) as client:
        yield client


@pytest.fixture(autouse=True)
async def remove_leftover_containers(
    docker_client: docker.DockerClient, database_url: str, docker_queue: str
) -> AsyncIterator[None]:
    before = {c.id for c in managed(docker_client)}
    yield
    await remove_owned(docker_client, database_url, docker_queue, before, keep_pool_members=True)


@pytest.fixture(scope="session", autouse=True)
async def remove_session_containers(
    docker_client: docker.DockerClient, database_url: str, docker_queue: str
) -> AsyncIterator[None]:
    """A backstop for module-scoped fixtures: nothing of this session outlives it."""
    before = {c.id for c in managed(docker_client)}
    yield
    await remove_owned(docker_client, database_url, docker_queue, before)
