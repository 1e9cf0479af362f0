"""`DELETE /projects/{pid}` hides the project at once (202) and `ProjectDeletion` removes what
it leaves: its container, its workflows, its workspace, its open sockets, its rows (so its
blobs are collected by GC). Real Docker, PostgreSQL, Redis and Temporal; the project's
container runs the busybox image of the container tests."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import docker
import docker.errors
import httpx
import pytest
import websockets
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from files.service import FileSystem
from files.workspace import workspace_dir
from store import db, outbox
from tests.conftest import Server, api_client, serving
from tests.containers import conftest as containers
from tests.support import Account, assert_error, create_project, register, wait_until
from vaporform.config import Config
from vaporform.temporal_setup import signal_files_changed
from workflows.containers.names import container_name, container_workflow_id
from workflows.files.contract import RetentionInput, versioning_workflow_id
from workflows.files.versioning import RetentionWorkflow
from workflows.projects.contract import (
    ProjectDeletionInput,
    ProjectDeletionOutput,
    project_deletion_workflow_id,
)
from workflows.projects.deletion import ProjectDeletionWorkflow
from workflows.shared import PROJECT_ID

pytestmark = pytest.mark.docker

# The container tests' fixtures: the busybox image, a Docker host's worker, and the cleanup of
# every container a test leaves (autouse). Used here they are instances of their own, so this
# module's Docker host has a queue of its own (a second worker on the container tests' queue
# would be refused when both run in one session).
docker_client = containers.docker_client
runtime_image = containers.runtime_image
container_config = containers.container_config
files = containers.files
docker_worker = containers.docker_worker
remove_leftover_containers = containers.remove_leftover_containers
remove_session_containers = containers.remove_session_containers

SMALL = {"cpus": 0.5, "memory_mb": 64, "pids": 64}
REVOKED = 4003


@pytest.fixture(scope="session")
def docker_queue(run_id: str) -> str:
    return f"docker-deletion-{run_id}"


@pytest.fixture(scope="module")
async def api(container_config: Config, worker: None, docker_worker: None) -> AsyncIterator[Server]:
    async with serving(container_config) as found:
        yield found


@pytest.fixture
async def http(api: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(api, timeout=60) as client:
        yield client


async def _status(handle: WorkflowHandle[Any, Any]) -> WorkflowExecutionStatus | None:
    try:
        return (await handle.describe()).status
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def _running(client: Client, workflow_id: str) -> bool:
    return await _status(client.get_workflow_handle(workflow_id)) == (
        WorkflowExecutionStatus.RUNNING
    )


async def _deletion_result(client: Client, pid: str) -> ProjectDeletionOutput:
    """The result of the deletion the relay started from the outbox."""
    handle = client.get_workflow_handle_for(
        ProjectDeletionWorkflow.run, project_deletion_workflow_id(pid)
    )

    async def started() -> bool:
        return await _status(handle) is not None

    await wait_until(started, timeout=15, what="the relay to start ProjectDeletion")
    return await asyncio.wait_for(handle.result(), timeout=120)


async def _put(http: httpx.AsyncClient, owner: Account, pid: str, path: str, text: str) -> None:
    answer = await http.put(
        f"/api/v1/projects/{pid}/files/{path}", json={"content": text}, headers=owner.headers
    )
    assert answer.status_code == 201, answer.text


async def _collab(api: Server, pid: str, token: str) -> websockets.ClientConnection:
    url = api.base_url.replace("http://", "ws://") + f"/api/v1/projects/{pid}/collab"
    return await websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"})


async def _closed_with(socket: websockets.ClientConnection) -> tuple[int, str]:
    try:
        async with asyncio.timeout(10):
            async for _ in socket:
                pass
    except websockets.ConnectionClosed:
        pass
    assert socket.close_code is not None
    return socket.close_code, socket.close_reason or ""


async def _project_rows(database_url: str, pid: str) -> dict[str, int]:
    conn = await db.connect(database_url)
    try:
        project_id = uuid.UUID(pid)
        return {
            table: await conn.fetchval(
                f"SELECT count(*) FROM {table} WHERE {column} = $1", project_id
            )
            for table, column in (("projects", "id"), ("files", "project_id"))
        }
    finally:
        await conn.close()


async def test_deleting_a_project_removes_everything_it_left(
    api: Server,
    http: httpx.AsyncClient,
    temporal_client: Client,
    docker_client: docker.DockerClient,
    container_config: Config,
    files: FileSystem,
) -> None:
    owner = await register(http, "owner")
    pid = (await create_project(http, owner, name="doomed"))["id"]
    unique = uuid.uuid4().hex
    contents = {f"src/m{n}.py": f"x = '{unique} {n}'\n" for n in range(3)}
    for path, text in contents.items():
        await _put(http, owner, pid, path, text)
    digests = [hashlib.sha256(text.encode()).hexdigest() for text in contents.values()]
    started = await http.post(
        f"/api/v1/projects/{pid}/container", json={"resources": SMALL}, headers=owner.headers
    )
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "running", started.json()
    container_id = started.json()["container_id"]
    assert docker_client.containers.get(container_id).status == "running"
    workspace = workspace_dir(container_config.data_dir, uuid.UUID(pid))
    assert (workspace / "src/m0.py").read_text() == contents["src/m0.py"]

    async def versioning_runs() -> bool:
        return await _running(temporal_client, versioning_workflow_id(pid))

    await wait_until(versioning_runs, timeout=15, what="the versioning workflow to run")
    socket = await _collab(api, pid, owner.access_token)

    deleted = await http.delete(f"/api/v1/projects/{pid}", headers=owner.headers)
    assert deleted.status_code == 202, deleted.text
    assert deleted.json() == {
        "id": pid,
        "status": "deleting",
        "workflow_id": project_deletion_workflow_id(pid),
    }
    # Hidden at once, everywhere, before the workflow has done anything.
    for path in ("", "/files", "/files/src/m0.py", "/container", "/members", "/history?path=x"):
        assert_error(await http.get(f"/api/v1/projects/{pid}{path}", headers=owner.headers), 404)
    listed = (await http.get("/api/v1/projects", headers=owner.headers)).json()["items"]
    assert pid not in [p["id"] for p in listed]
    assert_error(await http.delete(f"/api/v1/projects/{pid}", headers=owner.headers), 404)
    assert await _closed_with(socket) == (REVOKED, "the project was deleted")

    result = await _deletion_result(temporal_client, pid)
    assert result.docker_queues == [container_config.containers.docker_queue]
    assert result.container_removed
    assert versioning_workflow_id(pid) in result.workflows_ended
    assert result.workspaces_removed >= 1
    assert result.purged

    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(container_id)
    assert docker_client.containers.list(all=True, filters={"name": container_name(pid)}) == []
    assert not await _running(temporal_client, container_workflow_id(pid))

    # Ended by the deletion; a file change announced just before the DELETE committed may
    # start it once more, and that run ends at its first batch (the test below).
    async def versioning_ended() -> bool:
        return not await versioning_runs()

    await wait_until(versioning_ended, timeout=15, what="versioning to end")
    assert not workspace.exists()
    assert await _project_rows(container_config.database_url, pid) == {"projects": 0, "files": 0}

    # Visible in the Temporal UI under the project's id.
    async def listed_by_project() -> bool:
        query = f"ProjectId = '{pid}' AND WorkflowType = 'ProjectDeletion'"
        return [w.id async for w in temporal_client.list_workflows(query)] == [
            project_deletion_workflow_id(pid)
        ]

    await wait_until(listed_by_project, timeout=15, what="the deletion to be listed")
    described = await temporal_client.get_workflow_handle(
        project_deletion_workflow_id(pid)
    ).describe()
    assert described.typed_search_attributes.get(PROJECT_ID) == pid

    # Its blobs are released: the next garbage collection takes them.
    assert all([await files.blobs.exists(sha) for sha in digests])
    await temporal_client.execute_workflow(
        RetentionWorkflow.run,
        RetentionInput(),
        id=f"retention-test-{uuid.uuid4().hex[:8]}",
        task_queue=container_config.task_queue,
    )
    assert not any([await files.blobs.exists(sha) for sha in digests])


async def test_deleting_again_finds_nothing_left(
    http: httpx.AsyncClient, temporal_client: Client, container_config: Config, files: FileSystem
) -> None:
    """A project that never had a container; then the deletion runs twice more, once started
    directly and once from a second outbox item: both complete and change nothing."""
    owner = await register(http, "owner")
    pid = (await create_project(http, owner))["id"]
    await _put(http, owner, pid, "a.txt", "only in the database and the workspace\n")
    workspace = workspace_dir(container_config.data_dir, uuid.UUID(pid))
    await files.materialise(uuid.UUID(pid))  # the API makes none; a host's mirror does
    assert workspace.is_dir()
    began = time.monotonic()
    assert (await http.delete(f"/api/v1/projects/{pid}", headers=owner.headers)).status_code == 202
    first = await _deletion_result(temporal_client, pid)
    assert (first.docker_queues, first.purged, first.workspaces_removed) == ([], True, 1)
    assert not workspace.exists()
    assert time.monotonic() - began < 60

    again = await temporal_client.execute_workflow(
        ProjectDeletionWorkflow.run,
        ProjectDeletionInput(project_id=pid),
        id=project_deletion_workflow_id(pid),
        task_queue=container_config.task_queue,
    )
    assert again == ProjectDeletionOutput(docker_queues=[], workflows_ended=[], purged=False)

    conn = await db.connect(container_config.database_url)
    try:
        await outbox.enqueue(conn, "project_deletion", {"project_id": pid})

        async def drained() -> bool:
            return bool(
                await conn.fetchval(
                    "SELECT count(*) = 0 FROM outbox WHERE kind = 'project_deletion'"
                )
            )

        await wait_until(drained, timeout=15, what="the relay to take the second item")
    finally:
        await conn.close()
    third = await _deletion_result(temporal_client, pid)
    assert third.purged is False
    assert await _project_rows(container_config.database_url, pid) == {"projects": 0, "files": 0}


async def test_a_late_file_change_does_not_keep_a_deleted_project_versioning(
    http: httpx.AsyncClient, temporal_client: Client, container_config: Config
) -> None:
    """A change announced just before the DELETE committed can signal-with-start
    `versioning-<pid>` after the deletion ended it: that run ends at its first batch, having
    imported and counted nothing, instead of idling for ten minutes on a project that is gone."""
    owner = await register(http, "owner")
    pid = (await create_project(http, owner))["id"]
    await _put(http, owner, pid, "a.txt", "soon gone\n")
    assert (await http.delete(f"/api/v1/projects/{pid}", headers=owner.headers)).status_code == 202
    assert (await _deletion_result(temporal_client, pid)).purged

    await signal_files_changed(
        temporal_client, container_config.task_queue, pid, ["a.txt"], "workspace"
    )
    handle = temporal_client.get_workflow_handle(versioning_workflow_id(pid))
    assert await asyncio.wait_for(handle.result(), timeout=30) is None
    activities = [
        event.activity_task_scheduled_event_attributes.activity_type.name
        async for event in handle.fetch_history_events()
        if event.HasField("activity_task_scheduled_event_attributes")
    ]
    assert activities == ["project_is_live"]
    assert await _project_rows(container_config.database_url, pid) == {"projects": 0, "files": 0}
    workspace = workspace_dir(container_config.data_dir, uuid.UUID(pid))
    assert not workspace.exists()
