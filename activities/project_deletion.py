"""The activities of `ProjectDeletion` (workflows/projects/deletion.py).

`ProjectDeletionActivities` run on the main task queue (any worker): they need the Temporal
client (the project's workflows), PostgreSQL (the purge), the broker (sockets) and the worker's
own data dir. `ProjectDeletionHostActivities` run on a Docker host's queue, where that host's
workspaces are. Every one is idempotent: a retry, or a second run, finds its work done.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from activities.heartbeat import beating
from collab import channels
from collab.broker import Broker
from files.locks import ProjectLock
from files.workspace import workspace_dir
from store import projects
from workflows.containers.contract import ContainerStatus, StopInput, WorkspaceInput
from workflows.containers.names import container_workflow_id
from workflows.files.contract import versioning_workflow_id
from workflows.projects.contract import (
    ContainerEnded,
    DeletionRef,
    EndWorkflowsInput,
    Purged,
    SocketsClosed,
    WorkflowsEnded,
    WorkspaceRemoved,
)

log = logging.getLogger("vaporform.deletion")

# How long a stopped container workflow may take to complete on its own before it is ended.
CLOSE_WAIT_S = 10.0


def _not_found(exc: RPCError) -> bool:
    return exc.status == RPCStatusCode.NOT_FOUND


async def _running(handle: WorkflowHandle[Any, Any]) -> bool | None:
    """Whether the workflow runs; None when Temporal does not know it."""
    try:
        described = await handle.describe()
    except RPCError as exc:
        if _not_found(exc):
            return None
        raise
    return described.status == WorkflowExecutionStatus.RUNNING


async def _terminate(handle: WorkflowHandle[Any, Any], reason: str) -> bool:
    try:
        await handle.terminate(reason=reason)
    except RPCError as exc:
        if _not_found(exc):  # closed meanwhile, or never there
            return False
        raise
    return True


def remove_tree(path: Path) -> bool:
    """Remove a workspace folder and everything in it; False when there was none.

    The workspace belongs to the container's programs: `shutil.rmtree` works on descriptors
    (`openat`, `O_NOFOLLOW`) on Linux and never follows a link out of the tree."""
    if not shutil.rmtree.avoids_symlink_attacks:
        raise RuntimeError("this platform's rmtree may follow links: refusing to remove")
    if path.is_symlink():
        path.unlink()
        return True
    if not path.exists():
        return False
    shutil.rmtree(path)
    return True


async def _remove_workspace(pool: asyncpg.Pool | None, path: Path, project_id: UUID) -> bool:
    """Under the project's workspace lock, which every mirror write and import takes."""
    if pool is None:
        return await asyncio.to_thread(remove_tree, path)
    async with ProjectLock(pool, project_id, exclusive=True):
        return await asyncio.to_thread(remove_tree, path)


class ProjectDeletionActivities:
    def __init__(
        self, pool: asyncpg.Pool, client: Client, data_dir: Path, broker: Broker | None
    ) -> None:
        self._pool = pool
        self._client = client
        self._data_dir = data_dir
        self._broker = broker

    @activity.defn(name="project_deletion_end_container")
    async def end_container(self, data: DeletionRef) -> ContainerEnded:
        """Stop the container entity workflow (its teardown removes the container), then make
        sure it has ended; report the Docker host that served the project."""
        handle = self._client.get_workflow_handle(container_workflow_id(data.project_id))
        running = await _running(handle)
        if running is None:
            return ContainerEnded()  # never had a container (or Temporal forgot it)
        async with beating(1.0):
            if running:
                status: ContainerStatus = await handle.execute_update(
                    "stop",
                    StopInput(requested_by="project-deletion", reason="project deleted"),
                    result_type=ContainerStatus,
                )
                # Stopped and idle, it completes on its own; one that does not is ended.
                try:
                    await asyncio.wait_for(handle.result(), CLOSE_WAIT_S)
                except TimeoutError:
                    await _terminate(handle, "project deleted")
                except WorkflowFailureError:
                    pass  # it has ended, which is all that matters here
            else:
                try:  # a closed run still answers its last status
                    status = await handle.query("status", result_type=ContainerStatus)
                except RPCError as exc:
                    log.warning(
                        "no status of the closed container workflow",
                        extra={"project_id": data.project_id, "error": str(exc)},
                    )
                    return ContainerEnded()
        return ContainerEnded(
            docker_queue=status.docker_queue,
            container_id=status.container_id,
            was_running=bool(running),
        )

    @activity.defn(name="project_deletion_end_workflows")
    async def end_workflows(self, data: EndWorkflowsInput) -> WorkflowsEnded:
        """End the versioning entity and every other workflow still running for the project."""
        ended: list[str] = []
        keep = set(data.keep)
        versioning = versioning_workflow_id(data.project_id)
        if await _terminate(self._client.get_workflow_handle(versioning), "project deleted"):
            ended.append(versioning)
        query = f"ProjectId = '{UUID(data.project_id)}' AND ExecutionStatus = 'Running'"
        async for execution in self._client.list_workflows(query):
            activity.heartbeat()
            if execution.id in keep or execution.id in ended:
                continue
            handle = self._client.get_workflow_handle(execution.id, run_id=execution.run_id)
            if await _terminate(handle, "project deleted"):
                ended.append(execution.id)
        return WorkflowsEnded(ended=ended)

    @activity.defn(name="project_deletion_close_sockets")
    async def close_sockets(self, data: DeletionRef) -> SocketsClosed:
        """Every API node re-checks the project's sockets: the project is hidden, so they
        close (web/revocation.py)."""
        if self._broker is None:
            return SocketsClosed(announced=False)
        event = {"node": "project-deletion", "project_id": str(UUID(data.project_id))}
        await self._broker.publish(channels.ACCESS, json.dumps(event).encode())
        return SocketsClosed(announced=True)

    @activity.defn(name="project_deletion_purge")
    async def purge(self, data: DeletionRef) -> Purged:
        project_id = UUID(data.project_id)
        async with self._pool.acquire() as conn, conn.transaction():
            files = await conn.fetchval(
                "SELECT count(*) FROM files WHERE project_id = $1", project_id
            )
            purged = await projects.purge(conn, project_id)
        return Purged(purged=purged, files=int(files) if purged else 0)

    @activity.defn(name="project_deletion_remove_workspace")
    async def remove_workspace(self, data: DeletionRef) -> WorkspaceRemoved:
        """The workspace in this worker's data dir (its agent's, when the agent runs in it)."""
        project_id = UUID(data.project_id)
        path = workspace_dir(self._data_dir, project_id)
        async with beating(1.0):
            removed = await _remove_workspace(self._pool, path, project_id)
        return WorkspaceRemoved(removed=removed, path=str(path))

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.end_container,
            self.end_workflows,
            self.close_sockets,
            self.purge,
            self.remove_workspace,
        ]


class ProjectDeletionHostActivities:
    """On a Docker host's queue: that host's copy of a deleted project's workspace."""

    def __init__(self, data_dir: Path, pool: asyncpg.Pool | None) -> None:
        self._data_dir = data_dir.resolve()
        self._pool = pool

    @activity.defn(name="docker_remove_workspace")
    async def remove_workspace(self, data: WorkspaceInput) -> WorkspaceRemoved:
        project_id = UUID(data.project_id)
        path = workspace_dir(self._data_dir, project_id)
        async with beating(1.0):
            removed = await _remove_workspace(self._pool, path, project_id)
        return WorkspaceRemoved(removed=removed, path=str(path))

    def all(self) -> list[Callable[..., Any]]:
        return [self.remove_workspace]
