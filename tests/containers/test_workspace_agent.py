"""The workspace mirror through the agent: the API never touches a workspace.

A Docker host of its own here: a data dir, a Docker queue and worker, and an agent (restarted by
one test), with S3 (SeaweedFS) as the blob store. Two API processes (`vaporform api`) each have
a data dir of their own and no Docker engine within reach, and share PostgreSQL, Redis and S3
with the host. A file written through either is in the container's `/workspace` when the write
answers (the API's sync call to the agent), and what a program writes there comes back as a
version (the agent's watcher).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import asyncpg
import docker
import httpx
import pytest
from temporalio.client import Client

from agent.serve import serve_agent
from files.factory import build_blob_store, build_filesystem
from files.model import ChangeEvent
from files.service import FileSystem
from files.workspace import WorkspaceConflict
from store import db
from tests.conftest import free_port
from tests.seaweed import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, make_bucket, seaweed_s3
from tests.support import (
    Account,
    api_process_env,
    assert_error,
    create_project,
    register,
    stop_processes,
    wait_until,
)
from vaporform.config import Config
from vaporform.settings.blobs import BlobStoreSettings
from vaporform.temporal_setup import signal_files_changed
from worker import build_docker_worker

ROOT = Path(__file__).resolve().parents[2]
NOWHERE = "unix:///nonexistent/docker.sock"
SMALL = {"cpus": 0.5, "memory_mb": 64, "pids": 64}
# The settings of the test session that an API process takes from `api_process_env`; any other
# VAPORFORM_* of the environment this runs in is left out.
OURS = {
    "VAPORFORM_REDIS_PREFIX",
    "VAPORFORM_TASK_QUEUE",
    "VAPORFORM_DATA_DIR",
    "VAPORFORM_JWT_SECRET",
    "VAPORFORM_API_PORT",
    "VAPORFORM_LOG_LEVEL",
    "VAPORFORM_ARGON2_TIME_COST",
    "VAPORFORM_ARGON2_MEMORY_KIB",
    "VAPORFORM_LOGIN_PER_EMAIL",
    "VAPORFORM_LOGIN_PER_IP",
    "VAPORFORM_REGISTER_PER_IP",
}


class Agent:
    """The host's agent, as `vaporform agent` runs it (its own pool, blob store, watcher)."""

    def __init__(self, config: Config, docker_client: docker.DockerClient) -> None:
        self.config = config
        self.docker_client = docker_client
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(
            serve_agent(self.config, self.docker_client, self.stop, quiet=True)
        )
        url = self.config.agent.default_url + "/healthz"

        async def healthy() -> bool:
            try:
                async with httpx.AsyncClient() as client:
                    return (await client.get(url)).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(healthy, timeout=15, what="the agent to answer /healthz")

    async def halt(self) -> None:
        self.stop.set()
        if self.task is not None:
            await self.task
            self.task = None


@dataclass
class Host:
    config: Config  # the host's (and the API processes' but for their data dirs)
    agent: Agent
    files: FileSystem  # what the Docker worker uses: the host's data dir, S3


@pytest.fixture(scope="module")
def s3_config(
    container_config: Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Config]:
    with seaweed_s3(tmp_path_factory.mktemp("seaweedfs")) as endpoint:
        bucket = f"vf-ws-{uuid.uuid4().hex[:12]}"
        make_bucket(endpoint, bucket)
        blobs = BlobStoreSettings(
            kind="s3",
            s3_endpoint=endpoint,
            s3_bucket=bucket,
            s3_region=REGION,
            s3_access_key_id=ACCESS_KEY_ID,
            s3_secret_access_key=SECRET_ACCESS_KEY,
            s3_prefix="blobs",
        )
        yield replace(
            container_config,
            data_dir=tmp_path_factory.mktemp("docker-host"),
            blob_store=blobs,
            agent=replace(container_config.agent, port=free_port()),
            containers=replace(
                container_config.containers, docker_queue=f"docker-ws-{uuid.uuid4().hex[:8]}"
            ),
        )


@pytest.fixture(scope="module")
async def host(
    s3_config: Config, temporal_client: Client, docker_client: docker.DockerClient, worker: None
) -> AsyncIterator[Host]:
    pool = await db.create_pool(s3_config.database_url, min_size=1, max_size=5)
    files = build_filesystem(s3_config, pool)
    agent = Agent(s3_config, docker_client)
    try:
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="ws-docker") as executor:
            async with build_docker_worker(
                temporal_client,
                docker_client,
                s3_config.data_dir,
                s3_config.containers.docker_queue,
                executor,
                files,
            ):
                await agent.start()
                yield Host(s3_config, agent, files)
                await agent.halt()
    finally:
        await pool.close()


def _api_env(config: Config, port: int, data_dir: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in api_process_env(config, port).items()
        if not key.startswith("VAPORFORM_") or key in OURS
    }
    blobs = config.blob_store
    env.update(
        {
            "DOCKER_HOST": NOWHERE,
            "VAPORFORM_DATA_DIR": str(data_dir),
            "VAPORFORM_API_HOST": "127.0.0.1",
            "VAPORFORM_SERVER": "hypercorn",
            "VAPORFORM_BLOB_STORE": "s3",
            "VAPORFORM_S3_ENDPOINT": blobs.s3_endpoint or "",
            "VAPORFORM_S3_BUCKET": blobs.s3_bucket,
            "VAPORFORM_S3_REGION": blobs.s3_region,
            "VAPORFORM_S3_ACCESS_KEY_ID": blobs.s3_access_key_id or "",
            "VAPORFORM_S3_SECRET_ACCESS_KEY": blobs.s3_secret_access_key or "",
            "VAPORFORM_S3_PREFIX": blobs.s3_prefix,
            "VAPORFORM_DOCKER_QUEUE": config.containers.docker_queue,
            "VAPORFORM_CONTAINER_IMAGE": config.containers.default_image,
            "VAPORFORM_POOL_SIZE": "0",
            "VAPORFORM_AGENT_HOST": config.agent.host,
            "VAPORFORM_AGENT_PORT": str(config.agent.port),
        }
    )
    return env


def _spawn(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "vaporform.cli", "api"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@dataclass
class Api:
    url: str
    data_dir: Path


@pytest.fixture(scope="module")
async def apis(host: Host, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[list[Api]]:
    logs = tmp_path_factory.mktemp("ws-apis")
    found: list[Api] = []
    children: list[subprocess.Popen[bytes]] = []
    for name in ("a", "b"):
        port, data_dir = free_port(), tmp_path_factory.mktemp(f"api-{name}")
        env = _api_env(host.config, port, data_dir)
        children.append(_spawn(env, logs / f"api-{name}.log"))
        found.append(Api(f"http://127.0.0.1:{port}", data_dir))

    async def answering() -> bool:
        for api in found:
            try:
                async with httpx.AsyncClient() as client:
                    if (await client.get(api.url + "/healthz")).status_code != 200:
                        return False
            except httpx.TransportError:
                return False
        return True

    try:
        await wait_until(answering, timeout=30, what="both API processes")
        yield found
    finally:
        stop_processes(children, {f"api {name}": logs / f"api-{name}.log" for name in ("a", "b")})
        for api in found:
            # Neither API process ever made a workspace (nor blobs: they are in S3).
            made = sorted(p.name for p in api.data_dir.iterdir())
            assert "workspaces" not in made, made
            assert "blobs" not in made, made


class Project:
    def __init__(self, clients: list[httpx.AsyncClient], owner: Account, pid: str) -> None:
        self.a, self.b = clients
        self.owner = owner
        self.pid = pid
        self.base = f"/api/v1/projects/{pid}"

    async def put(self, via: httpx.AsyncClient, path: str, text: str) -> httpx.Response:
        return await via.put(
            f"{self.base}/files/{path}", json={"content": text}, headers=self.owner.headers
        )

    async def read(self, via: httpx.AsyncClient, path: str) -> str | None:
        got = await via.get(f"{self.base}/files/{path}", headers=self.owner.headers)
        if got.status_code == 404:
            return None
        assert got.status_code == 200, got.text
        return str(got.json()["content"])

    async def sh(self, script: str) -> str:
        done = await self.a.post(
            f"{self.base}/container/exec",
            json={"command": ["sh", "-c", script], "timeout_s": 20},
            headers=self.owner.headers,
        )
        assert done.status_code == 200, done.text
        assert done.json()["exit_code"] == 0, done.text
        return str(done.json()["stdout"])


@pytest.fixture
async def project(apis: list[Api]) -> AsyncIterator[Project]:
    async with (
        httpx.AsyncClient(base_url=apis[0].url, timeout=60) as a,
        httpx.AsyncClient(base_url=apis[1].url, timeout=60) as b,
    ):
        owner = await register(a, "ws-agent")
        pid = (await create_project(a, owner))["id"]
        found = Project([a, b], owner, pid)
        started = await a.post(
            f"{found.base}/container", json={"resources": SMALL}, headers=owner.headers
        )
        assert started.status_code == 202, started.text
        assert started.json()["status"] == "running", started.json()
        yield found
        await a.post(f"{found.base}/container/stop", headers=owner.headers)


async def test_writes_reach_the_container_and_its_writes_come_back(project: Project) -> None:
    """Through either API process; neither has a Docker engine or the host's disk."""
    written = await project.put(project.a, "src/hello.txt", "hello from a\n")
    assert written.status_code == 201, written.text
    # In the container as soon as the write has answered: the agent wrote it before.
    assert await project.sh("cat /workspace/src/hello.txt") == "hello from a\n"
    # Read through the other API process (the blob is in S3, not in either data dir).
    assert await project.read(project.b, "src/hello.txt") == "hello from a\n"
    assert (await project.put(project.b, "src/hello.txt", "and b\n")).status_code == 200
    assert await project.sh("cat /workspace/src/hello.txt") == "and b\n"

    await project.sh("echo computed > /workspace/out.txt && rm /workspace/src/hello.txt")

    async def came_back() -> bool:
        return (
            await project.read(project.b, "out.txt") == "computed\n"
            and await project.read(project.a, "src/hello.txt") is None
        )

    await wait_until(came_back, timeout=20, what="the container's changes as versions")
    history = await project.a.get(
        f"{project.base}/history?path=out.txt", headers=project.owner.headers
    )
    assert history.json()["items"][0]["author"] == "container"


async def test_a_refusal_in_the_workspace_is_the_writers_409(project: Project) -> None:
    await project.sh("ln -s /etc /workspace/t")
    refused = await project.put(project.b, "t/x.txt", "user text\n")
    error = assert_error(refused, 409, "workspace_conflict")
    assert error["details"]["path"] == "t"
    assert await project.read(project.a, "t/x.txt") == "user text\n"


async def _missed_sync(project_id: uuid.UUID, paths: Sequence[str]) -> list[WorkspaceConflict]:
    return []


async def test_a_missed_sync_is_caught_up_from_the_announcement(
    project: Project, host: Host, temporal_client: Client
) -> None:
    """A write whose sync call never reached the agent (it answers 200, committed) is still
    brought in: the agent follows the project's announcements."""
    config = host.config

    async def announce(event: ChangeEvent) -> None:  # what the API's announcer does
        await signal_files_changed(
            temporal_client, config.task_queue, str(event.project_id), list(event.paths), "api"
        )

    pool: asyncpg.Pool = host.files.pool
    api_like = FileSystem(
        pool,
        build_blob_store(config),
        config.data_dir / "unused",
        workspace_sync=_missed_sync,
        notifier=announce,
    )
    await api_like.write(uuid.UUID(project.pid), "late.txt", b"late\n", author_id=None)

    async def arrived() -> bool:
        return await project.sh("cat /workspace/late.txt 2>/dev/null || true") == "late\n"

    await wait_until(arrived, timeout=20, what="the announced change in the workspace")


async def test_an_agent_restart_converges_on_postgresql(project: Project, host: Host) -> None:
    assert (await project.put(project.a, "keep.txt", "one\n")).status_code == 201
    assert (await project.put(project.a, "doomed.txt", "bye\n")).status_code == 201
    await project.sh("echo mine > /workspace/prog.txt")

    async def imported() -> bool:
        return await project.read(project.b, "prog.txt") == "mine\n"

    await wait_until(imported, timeout=20, what="the program's file as a version")
    await host.agent.halt()
    try:
        # Meanwhile: writes the agent cannot be told of, and a program's edit nobody watches.
        assert (await project.put(project.a, "keep.txt", "two\n")).status_code == 200
        assert (await project.put(project.b, "new.txt", "new\n")).status_code == 201
        gone = await project.a.delete(
            f"{project.base}/files/doomed.txt", headers=project.owner.headers
        )
        assert gone.status_code == 204, gone.text
        await project.sh("echo edited > /workspace/prog.txt")
        assert await project.sh("cat /workspace/keep.txt") == "one\n"
    finally:
        await host.agent.start()

    async def converged() -> bool:
        listing = await project.sh("cd /workspace && cat keep.txt new.txt prog.txt; ls")
        return listing == "two\nnew\nedited\nkeep.txt\nnew.txt\nprog.txt\n"

    await wait_until(converged, timeout=30, what="the workspace to converge")
    assert await project.read(project.b, "prog.txt") == "edited\n"
    assert await project.read(project.a, "doomed.txt") is None
