"""Records the histories that `test_replay.py` replays, from real runs.

Each scenario drives a real workflow on the test stack (Temporal dev server, the session's
worker, the Docker worker with the busybox image, PostgreSQL, the API) through the paths worth
guarding, then writes `await handle.fetch_history()` as JSON to `histories/<name>.json`.

Record again when a workflow gains a path worth guarding. A history that stops replaying is
what the replay test is for: it means open runs of that workflow would fail on the new code, so
keep the old commands behind `workflow.patched(...)` rather than re-recording to make CI pass
(re-record only once no run started by the old code can still be open):

    .venv/bin/pytest -q -p no:cacheprovider tests/workflows/record_histories.py

(`-k pool` records one scenario). The module is not collected by default: its name does not
match `test_*.py`, so only naming it on the command line runs it.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy

from files.workspace import workspace_dir
from tests.containers import conftest as docker_setup
from tests.support import create_project, register, wait_until
from vaporform.config import Config
from vaporform.temporal_setup import ensure_pools, signal_files_changed
from workflows.containers.contract import (
    ContainerSpec,
    ContainerStatus,
    ContainerWorkflowInput,
    EnsureRunningInput,
    PoolMembersGoneInput,
    PoolResizeInput,
    Resources,
    StopInput,
    TouchInput,
    VanishedInput,
    pool_spec,
)
from workflows.containers.entity import ContainerWorkflow
from workflows.containers.names import container_workflow_id
from workflows.containers.pool import ContainerPoolWorkflow
from workflows.files.contract import versioning_workflow_id
from workflows.files.versioning import VersioningWorkflow

HISTORIES = Path(__file__).parent / "histories"

# The Docker fixtures of the container tests, made visible to this module.
docker_client = docker_setup.docker_client
runtime_image = docker_setup.runtime_image
broken_image = docker_setup.broken_image
docker_queue = docker_setup.docker_queue
container_config = docker_setup.container_config
files = docker_setup.files
docker_worker = docker_setup.docker_worker
remove_session_containers = docker_setup.remove_session_containers

SMALL = Resources(cpus=0.5, memory_mb=64, pids=64)
LARGER = Resources(cpus=0.5, memory_mb=96, pids=64)


async def save(handle: WorkflowHandle[Any, Any], name: str) -> None:
    history = await handle.fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"{name}.json").write_text(history.to_json() + "\n")


async def completed_activities(handle: WorkflowHandle[Any, Any]) -> Counter[str]:
    """How many times each activity (by name) has completed in this run."""
    events = (await handle.fetch_history()).events
    names = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
    }
    return Counter(
        names[e.activity_task_completed_event_attributes.scheduled_event_id]
        for e in events
        if e.HasField("activity_task_completed_event_attributes")
    )


async def quiet(handle: WorkflowHandle[Any, Any]) -> bool:
    """No activity and no workflow task in flight: the workflow waits for something."""
    raw = (await handle.describe()).raw_description
    return not raw.pending_activities and not raw.HasField("pending_workflow_task")


async def start_container(
    client: Client,
    config: Config,
    pid: str,
    spec: ContainerSpec,
    *,
    expect: str = "running",
    **fields: Any,
) -> tuple[WorkflowHandle[Any, ContainerStatus], ContainerStatus]:
    workflow_id = container_workflow_id(pid)
    status = await client.execute_update_with_start_workflow(
        ContainerWorkflow.ensure_running,
        EnsureRunningInput(spec, "recorder", pool_id=fields.pop("pool_id", None)),
        start_workflow_operation=WithStartWorkflowOperation(
            ContainerWorkflow.run,
            ContainerWorkflowInput(
                project_id=pid,
                user_id="recorder",
                docker_queue=config.containers.docker_queue,
                **fields,
            ),
            id=workflow_id,
            task_queue=config.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        ),
    )
    assert status.status == expect, status
    return client.get_workflow_handle_for(ContainerWorkflow.run, workflow_id), status


async def test_record_container_lifecycle(
    temporal_client: Client,
    container_config: Config,
    runtime_image: str,
    worker: None,
    docker_worker: None,
) -> None:
    """Cold start, the same spec again, another spec, a vanished container, restart, touches
    until continue-as-new; then, in the new run, stop (the workflow completes)."""
    pid = str(uuid.uuid4())
    spec = ContainerSpec(image=runtime_image, resources=SMALL)
    handle, first = await start_container(
        temporal_client, container_config, pid, spec, max_history_events=200
    )
    first_run = (await handle.describe()).run_id
    again = await handle.execute_update(
        ContainerWorkflow.ensure_running, EnsureRunningInput(spec, "recorder")
    )
    assert again.container_id == first.container_id
    other = ContainerSpec(image=runtime_image, resources=LARGER)
    replaced = await handle.execute_update(
        ContainerWorkflow.ensure_running, EnsureRunningInput(other, "recorder")
    )
    assert replaced.container_id not in (None, first.container_id), replaced

    await handle.signal(ContainerWorkflow.container_vanished, VanishedInput(replaced.container_id))

    async def reprovisioned() -> bool:
        now = await handle.query(ContainerWorkflow.status)
        return now.status == "running" and now.container_id not in (None, replaced.container_id)

    await wait_until(reprovisioned, timeout=30, what="provisioning after the vanished container")
    restarted = await handle.execute_update(ContainerWorkflow.restart, StopInput("recorder"))
    assert restarted.status == "running", restarted

    async def continued() -> bool:
        await handle.signal(ContainerWorkflow.touch, TouchInput("recorder"))
        return (await handle.describe()).run_id != first_run

    await wait_until(continued, timeout=60, what="continue-as-new")
    first_handle = temporal_client.get_workflow_handle(handle.id, run_id=first_run)
    await save(first_handle, "container-lifecycle")

    stopped = await handle.execute_update(ContainerWorkflow.stop, StopInput("recorder"))
    assert stopped.status == "stopped", stopped
    assert (await handle.result()).status == "stopped"
    await save(handle, "container-continued")


async def test_record_container_idle_stop(
    temporal_client: Client,
    container_config: Config,
    runtime_image: str,
    worker: None,
    docker_worker: None,
) -> None:
    """A touch, then nothing: the idle deadline stops the container and the workflow ends."""
    pid = str(uuid.uuid4())
    spec = ContainerSpec(image=runtime_image, resources=SMALL)
    handle, _ = await start_container(
        temporal_client, container_config, pid, spec, idle_timeout_s=2
    )
    await handle.signal(ContainerWorkflow.touch, TouchInput("recorder"))
    assert (await handle.result()).status == "stopped"
    await save(handle, "container-idle")


async def test_record_container_failed_start(
    temporal_client: Client,
    container_config: Config,
    broken_image: str,
    worker: None,
    docker_worker: None,
) -> None:
    """The container is created but cannot start: compensation removes it, the run ends."""
    spec = ContainerSpec(image=broken_image, resources=SMALL)
    handle, _ = await start_container(
        temporal_client, container_config, str(uuid.uuid4()), spec, expect="failed"
    )
    assert (await handle.result()).status == "failed"
    await save(handle, "container-failed")


async def test_record_pool_and_warm_start(
    temporal_client: Client,
    container_config: Config,
    runtime_image: str,
    worker: None,
    docker_worker: None,
) -> None:
    """The pool fills, a project claims a member (warm start), the pool refills, grows, loses a
    member to the reconciler, shrinks, and is drained to completion."""
    settings = container_config.containers
    [pool_id] = await ensure_pools(
        temporal_client,
        container_config.task_queue,
        settings.docker_queue,
        {runtime_image: 2},
        float(settings.health_timeout_s),
    )
    pool = temporal_client.get_workflow_handle_for(ContainerPoolWorkflow.run, pool_id)

    async def ready(count: int) -> bool:
        status = await pool.query(ContainerPoolWorkflow.status)
        return len(status.ready) == count and not status.creating

    await wait_until(lambda: ready(2), timeout=60, what="the pool to fill")
    pid = str(uuid.uuid4())
    warm, status = await start_container(
        temporal_client, container_config, pid, pool_spec(runtime_image), pool_id=pool_id
    )
    claims = (await pool.query(ContainerPoolWorkflow.status)).claims
    assert [c.member.container_id for c in claims] == [status.container_id], claims
    stopped = await warm.execute_update(ContainerWorkflow.stop, StopInput("recorder"))
    assert stopped.status == "stopped", stopped
    assert (await warm.result()).status == "stopped"
    await save(warm, "container-warm")

    await wait_until(lambda: ready(2), timeout=60, what="the pool to refill")
    await pool.signal(ContainerPoolWorkflow.resize, PoolResizeInput(3))
    await wait_until(lambda: ready(3), timeout=60, what="the pool to grow")
    gone = (await pool.query(ContainerPoolWorkflow.status)).ready[0].container_id
    await pool.signal(ContainerPoolWorkflow.members_gone, PoolMembersGoneInput([gone]))

    async def replaced() -> bool:
        found = await pool.query(ContainerPoolWorkflow.status)
        ids = [m.container_id for m in found.ready]
        return len(ids) == 3 and gone not in ids and not found.creating

    await wait_until(replaced, timeout=60, what="the gone member to be replaced")
    await pool.signal(ContainerPoolWorkflow.resize, PoolResizeInput(1))
    await wait_until(lambda: ready(1), timeout=60, what="the pool to shrink")
    await ensure_pools(
        temporal_client, container_config.task_queue, settings.docker_queue, {runtime_image: 0}
    )
    assert (await pool.result()).ready == []
    await save(pool, "pool")


async def test_record_versioning_batches(
    http: httpx.AsyncClient, temporal_client: Client, config: Config, data_dir: Path
) -> None:
    """API writes (one alone, two debounced together), a workspace change imported, a workspace
    echo with nothing new, a full scan; then the entity is terminated (it would idle 10 min)."""
    owner = await register(http, "recorder")
    pid = (await create_project(http, owner))["id"]
    handle = temporal_client.get_workflow_handle_for(
        VersioningWorkflow.run, versioning_workflow_id(pid)
    )

    async def put(path: str, text: str) -> None:
        response = await http.put(
            f"/api/v1/projects/{pid}/files/{path}", json={"content": text}, headers=owner.headers
        )
        assert response.status_code in (200, 201), response.text

    async def settled_with(files_counted: int) -> bool:
        project = (await http.get(f"/api/v1/projects/{pid}", headers=owner.headers)).json()
        stats: dict[str, Any] = project["metadata"].get("files") or {}
        return stats.get("count") == files_counted and await quiet(handle)

    async def settled_after(imports: int) -> bool:
        done = await completed_activities(handle)
        return done["import_workspace_changes"] == imports and await quiet(handle)

    await put("a.txt", "one")
    await wait_until(lambda: settled_with(1), timeout=30, what="the first batch")
    await put("b.txt", "two")
    await put("c.txt", "three")
    await wait_until(lambda: settled_with(3), timeout=30, what="the debounced batch")

    workspace = workspace_dir(data_dir, uuid.UUID(pid))
    workspace.mkdir(parents=True, exist_ok=True)  # the API keeps none; a container start would
    (workspace / "made-in-container.txt").write_text("four")
    queue = config.task_queue
    await signal_files_changed(temporal_client, queue, pid, ["made-in-container.txt"], "workspace")
    await wait_until(lambda: settled_with(4), timeout=30, what="the workspace import")
    await wait_until(lambda: settled_after(1), timeout=30, what="the import batch to end")
    await signal_files_changed(temporal_client, queue, pid, ["made-in-container.txt"], "workspace")
    await wait_until(lambda: settled_after(2), timeout=30, what="the echo batch")
    await signal_files_changed(temporal_client, queue, pid, None, "workspace")
    await wait_until(lambda: settled_after(3), timeout=30, what="the full scan")
    await handle.terminate("recorded")
    await save(handle, "versioning")
