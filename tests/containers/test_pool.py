"""The warm pool: claims through the API, the slot folder becoming the workspace, refills,
reconciliation of pool members, draining. Real Docker engine, real Temporal dev server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import docker
import docker.errors
import httpx
import pytest
from temporalio.client import Client, WorkflowHandle

from activities.docker.pool import slots_root
from files.service import FileSystem
from files.workspace import workspace_dir, workspaces_root
from tests.conftest import Server, serving
from tests.containers.ai_ensure import ensure_the_ai_way
from tests.support import create_project, register, wait_until
from vaporform.config import Config
from vaporform.temporal_setup import ensure_pools
from vaporform.workspace_watch import watch_workspaces
from workflows.containers.contract import PoolStatus
from workflows.containers.contract.reconcile import ReconcileInput
from workflows.containers.names import (
    LABEL_CREATED_BY,
    LABEL_MANAGED,
    LABEL_POOL,
    LABEL_SLOT,
    LABEL_WORKFLOW,
    POOL_NAME_PREFIX,
    container_name,
    pool_workflow_id,
)
from workflows.containers.pool import ContainerPoolWorkflow
from workflows.containers.reconcile import ReconcileWorkflow

POOL_SIZE = 2


@pytest.fixture(scope="module")
def pool_config(container_config: Config) -> Config:
    return replace(
        container_config, containers=replace(container_config.containers, pool_size=POOL_SIZE)
    )


@pytest.fixture(scope="module")
async def pool(
    temporal_client: Client, pool_config: Config, runtime_image: str, docker_worker: None
) -> AsyncIterator[WorkflowHandle[Any, Any]]:
    settings = pool_config.containers
    [pool_id] = await ensure_pools(
        temporal_client,
        pool_config.task_queue,
        settings.docker_queue,
        {runtime_image: POOL_SIZE},
        float(settings.health_timeout_s),
    )
    handle = temporal_client.get_workflow_handle_for(ContainerPoolWorkflow.run, pool_id)
    yield handle
    # Drained: every unclaimed member and its slot folder go, then the pool completes.
    await ensure_pools(
        temporal_client, pool_config.task_queue, settings.docker_queue, {runtime_image: 0}
    )
    final = await asyncio.wait_for(handle.result(), timeout=30)
    assert final.ready == []


@pytest.fixture(scope="module")
async def pool_server(
    pool_config: Config, worker: None, docker_worker: None
) -> AsyncIterator[Server]:
    async with serving(pool_config) as found:
        yield found


@pytest.fixture
async def api(pool_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=pool_server.base_url, timeout=60) as client:
        yield client


async def full(pool: WorkflowHandle[Any, Any]) -> PoolStatus:
    found: list[PoolStatus] = []

    async def ready() -> bool:
        status = await pool.query(ContainerPoolWorkflow.status)
        found[:] = [status]
        return len(status.ready) == POOL_SIZE

    await wait_until(ready, timeout=30, what="the pool to be full")
    return found[0]


async def test_claim_makes_the_slot_the_workspace(
    api: httpx.AsyncClient,
    pool: WorkflowHandle[Any, Any],
    docker_client: docker.DockerClient,
    pool_config: Config,
    files: FileSystem,
) -> None:
    before = await full(pool)
    owner = await register(api, "owner")
    pid = (await create_project(api, owner))["id"]
    put = await api.put(
        f"/api/v1/projects/{pid}/files/src/hello.txt",
        json={"content": "hello from the database\n"},
        headers=owner.headers,
    )
    assert put.status_code == 201, put.text
    workspace = workspace_dir(pool_config.data_dir, uuid.UUID(pid))
    # The workspace an earlier container of the project left on this host.
    await files.materialise(uuid.UUID(pid))
    assert (workspace / "src" / "hello.txt").exists()
    (workspace / "scratch.bin").write_bytes(b"not a version, kept anyway")

    base = f"/api/v1/projects/{pid}/container"
    answer = await api.post(base, json={}, headers=owner.headers)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["status"] == "running", body
    # A member of the pool, not a cold start (how fast: bench/container_bench.py, warm phase).
    claimed = body["container_id"]
    assert claimed in {m.container_id for m in before.ready}

    container = docker_client.containers.get(claimed)
    assert container.name == container_name(pid)
    assert container.labels[LABEL_POOL] == pool.id
    slot = container.labels[LABEL_SLOT]
    assert not (slots_root(pool_config.data_dir) / slot).exists()  # it is the workspace now

    # The files that were in the workspace are in the container, and its writes land on disk.
    shown = await api.post(
        f"{base}/exec",
        json={"command": ["sh", "-c", "cat src/hello.txt scratch.bin; echo made > new.txt"]},
        headers=owner.headers,
    )
    assert shown.json()["stdout"] == "hello from the database\nnot a version, kept anyway", shown
    assert (workspace / "new.txt").read_text() == "made\n"

    # The pool refills without the claimed member, which it remembers as this project's.
    async def refilled() -> bool:
        status = await pool.query(ContainerPoolWorkflow.status)
        ids = {m.container_id for m in status.ready}
        return len(ids) == POOL_SIZE and claimed not in ids

    await wait_until(refilled, timeout=30, what="the pool to refill")
    status = await pool.query(ContainerPoolWorkflow.status)
    assert any(c.member.container_id == claimed and c.project_id == pid for c in status.claims)

    # A second ensure_running answers with the same container; stop removes it for good.
    again = (await api.post(base, json={}, headers=owner.headers)).json()
    assert again["container_id"] == claimed
    stopped = (await api.post(f"{base}/stop", headers=owner.headers)).json()
    assert stopped["status"] == "stopped"
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(claimed)
    assert (workspace / "src" / "hello.txt").exists()

    # The next start claims another member: a claimed one is never handed out twice.
    second = (await api.post(base, json={}, headers=owner.headers)).json()
    assert second["status"] == "running"
    assert second["container_id"] != claimed
    await api.post(f"{base}/stop", headers=owner.headers)


async def test_empty_workspace_is_materialised_and_watched(
    api: httpx.AsyncClient,
    pool: WorkflowHandle[Any, Any],
    pool_config: Config,
) -> None:
    """A workspace missing on this host (a new machine) is written out from the database, and
    the watcher sees what programs write in the swapped-in folder."""
    await full(pool)
    owner = await register(api, "owner")
    pid = (await create_project(api, owner))["id"]
    put = await api.put(
        f"/api/v1/projects/{pid}/files/app.py",
        json={"content": "print('hi')\n"},
        headers=owner.headers,
    )
    assert put.status_code == 201
    workspace = workspace_dir(pool_config.data_dir, uuid.UUID(pid))
    assert not workspace.exists()  # the API keeps none: the start makes it

    seen: list[tuple[str, list[str] | None]] = []
    stop, ready = asyncio.Event(), asyncio.Event()

    async def on_change(project_id: str, paths: list[str] | None) -> None:
        seen.append((project_id, paths))

    watcher = asyncio.create_task(
        watch_workspaces(workspaces_root(pool_config.data_dir), on_change, stop, ready)
    )
    try:
        await asyncio.wait_for(ready.wait(), timeout=10)
        base = f"/api/v1/projects/{pid}/container"
        body = (await api.post(base, json={}, headers=owner.headers)).json()
        assert body["status"] == "running", body
        shown = await api.post(
            f"{base}/exec",
            json={"command": ["sh", "-c", "cat app.py && echo x > written.txt"]},
            headers=owner.headers,
        )
        assert shown.json()["stdout"] == "print('hi')\n"

        async def noticed() -> bool:
            return any(p == pid and paths and "written.txt" in paths for p, paths in seen)

        await wait_until(noticed, timeout=10, what="the watcher to see the container's write")
        await api.post(f"{base}/stop", headers=owner.headers)
    finally:
        stop.set()
        await watcher


async def test_an_ai_job_claims_from_the_pool(
    api: httpx.AsyncClient,
    pool: WorkflowHandle[Any, Any],
    temporal_client: Client,
    pool_config: Config,
) -> None:
    """The AI jobs start a container through the API's client: warm when a member is ready."""
    before = await full(pool)
    owner = await register(api, "owner")
    pid = (await create_project(api, owner))["id"]
    found = await ensure_the_ai_way(temporal_client, pool_config, pid, owner.id)
    assert found.running, found
    assert found.container_id in {m.container_id for m in before.ready}
    await api.post(f"/api/v1/projects/{pid}/container/stop", headers=owner.headers)


async def test_other_specs_start_cold(
    api: httpx.AsyncClient, pool: WorkflowHandle[Any, Any], docker_client: docker.DockerClient
) -> None:
    before = await full(pool)
    owner = await register(api, "owner")
    pid = (await create_project(api, owner))["id"]
    base = f"/api/v1/projects/{pid}/container"
    body = (
        await api.post(base, json={"resources": {"memory_mb": 64}}, headers=owner.headers)
    ).json()
    assert body["status"] == "running", body
    assert body["container_id"] not in {m.container_id for m in before.ready}
    assert LABEL_POOL not in docker_client.containers.get(body["container_id"]).labels
    assert len((await pool.query(ContainerPoolWorkflow.status)).ready) == POOL_SIZE
    await api.post(f"{base}/stop", headers=owner.headers)


async def test_reconciler_keeps_members_and_replaces_dead_ones(
    api: httpx.AsyncClient,
    pool: WorkflowHandle[Any, Any],
    temporal_client: Client,
    docker_client: docker.DockerClient,
    pool_config: Config,
    runtime_image: str,
) -> None:
    before = await full(pool)
    owner = await register(api, "owner")
    pid = (await create_project(api, owner))["id"]
    base = f"/api/v1/projects/{pid}/container"
    claimed = (await api.post(base, json={}, headers=owner.headers)).json()["container_id"]
    await full(pool)
    # A pool-labelled container its pool never made: an orphan, as after a lost refill.
    stray_slot = str(uuid.uuid4())
    stray = docker_client.containers.create(
        runtime_image,
        command=["sleep", "infinity"],
        name=f"{POOL_NAME_PREFIX}{stray_slot}",
        labels={
            LABEL_MANAGED: "true",
            LABEL_POOL: pool.id,
            LABEL_SLOT: stray_slot,
            LABEL_WORKFLOW: pool.id,
            LABEL_CREATED_BY: "hand",
        },
        network_mode="none",
    )
    # One ready member dies (as after an engine restart).
    status = await pool.query(ContainerPoolWorkflow.status)
    dead = status.ready[0].container_id
    docker_client.containers.get(dead).remove(force=True)

    result = await temporal_client.execute_workflow(
        ReconcileWorkflow.run,
        ReconcileInput(docker_queue=pool_config.containers.docker_queue, grace_s=0),
        id=f"reconcile-test-{uuid.uuid4().hex[:8]}",
        task_queue=pool_config.task_queue,
    )
    # The engine is shared (other test runs' leftovers may go too): ours are checked by id.
    assert stray.id in result.removed
    assert claimed not in result.removed
    assert not {m.container_id for m in status.ready} & set(result.removed)
    assert docker_client.containers.get(claimed).status == "running"
    for member in status.ready[1:]:
        assert docker_client.containers.get(member.container_id).status == "running"

    async def replaced() -> bool:
        ids = {m.container_id for m in (await pool.query(ContainerPoolWorkflow.status)).ready}
        return len(ids) == POOL_SIZE and dead not in ids

    await wait_until(replaced, timeout=30, what="the pool to replace its dead member")
    assert before.pool_id == pool_workflow_id(pool_config.containers.docker_queue, runtime_image)
    await api.post(f"{base}/stop", headers=owner.headers)
