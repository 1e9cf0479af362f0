"""The project's workspace on the Docker host: prepared for a cold container, or made out of a
warm pool member's slot folder when the project claims that member.

These are async activities on the Docker host's queue: they need the file system (PostgreSQL,
the blob store) to take the project's workspace lock and to bring the project's files in.

Adoption, in the order a crash can interrupt and a retry resume (the slot folder is the inode
the member has bind-mounted at `/workspace`; a rename keeps the mount):

1. the member must be running; it is renamed `vaporform-<project_id>` (one name per project);
2. under the project's workspace lock (the one every mirror write and import takes), the
   existing workspace folder, if any, is renamed aside (`<slot>.previous`), the slot folder is
   renamed to the workspace path, and the entries of the old folder are moved into it; a
   retry picks up from whichever of these three folders exist;
3. the workspace is brought in step with PostgreSQL (`FileSystem.materialise`, the mirror's
   full reconcile, files/mirror.py), so the container sees every file as committed: what
   changed while no container ran here is written, and what a program changed that the
   watcher has not imported yet is imported rather than written over.

The watcher reports paths under the workspaces root by name, so the moves look to it like
files that changed in place: an import reads the real files and finds them unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import docker
import docker.errors
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.docker.engine import container_info
from activities.docker.naming import may_hold_project_name
from activities.docker.pool import slot_dir
from activities.heartbeat import beating
from files.locks import ProjectLock
from files.service import FileSystem
from files.workspace import workspace_dir
from vaporform.images import RUNTIME_UID
from workflows.containers.contract import AdoptInput, ContainerInfo, WorkspaceInput, WorkspaceOutput
from workflows.containers.names import CONTAINER_GONE, LABEL_MANAGED, NAME_TAKEN, container_name


def _is_empty(path: Path) -> bool:
    with os.scandir(path) as entries:
        return next(entries, None) is None


def _move_entries(source: Path, target: Path) -> None:
    """Move everything in `source` into `target`; what `source` holds wins over `target`."""
    for entry in list(os.scandir(source)):
        destination = target / entry.name
        if destination.is_dir() and not destination.is_symlink():
            shutil.rmtree(destination)
        elif destination.exists() or destination.is_symlink():
            destination.unlink()
        os.rename(entry.path, destination)


def swap_in_slot(slot: Path, workspace: Path) -> bool:
    """Make the slot folder the workspace, keeping what the workspace held. Idempotent.

    Returns whether the workspace ends up empty (nothing of the project was on disk)."""
    aside = slot.with_name(slot.name + ".previous")
    if slot.is_dir():
        if workspace.is_symlink():
            workspace.unlink()
        elif workspace.exists():
            if aside.exists():  # a retry after the first rename: fold the newer one in
                _move_entries(workspace, aside)
                workspace.rmdir()
            else:
                os.rename(workspace, aside)
        workspace.parent.mkdir(parents=True, exist_ok=True)
        os.rename(slot, workspace)
    if aside.exists():
        _move_entries(aside, workspace)
        aside.rmdir()
    if not workspace.is_dir():
        raise ApplicationError(
            f"slot {slot.name} is neither in the pool nor the workspace", non_retryable=True
        )
    return _is_empty(workspace)


class ContainerWorkspaceActivities:
    def __init__(
        self, client: docker.DockerClient, data_dir: Path, files: FileSystem | None
    ) -> None:
        self._docker = client
        self._data_dir = data_dir.resolve()
        self._files = files

    @contextlib.asynccontextmanager
    async def _workspace_lock(self, project_id: UUID) -> AsyncIterator[None]:
        """The lock `FileSystem` takes around mirror writes and imports of this project."""
        if self._files is None:
            yield
            return
        async with ProjectLock(self._files.pool, project_id, exclusive=True):
            yield

    async def _materialise(self, project_id: UUID) -> None:
        # Safe on a workspace in use too: the mirror imports a program's change it finds
        # rather than writing over it.
        if self._files is not None:
            async with beating():
                await self._files.materialise(project_id)

    @activity.defn(name="docker_prepare_workspace")
    async def prepare_workspace(self, data: WorkspaceInput) -> WorkspaceOutput:
        project_id = UUID(data.project_id)
        path = workspace_dir(self._data_dir, project_id)

        def prepare() -> None:
            path.mkdir(parents=True, exist_ok=True)
            # The container runs as uid 1000; the directory must be its own to be writable.
            if os.geteuid() == 0:
                os.chown(path, RUNTIME_UID, RUNTIME_UID)

        async with self._workspace_lock(project_id):
            await asyncio.to_thread(prepare)
        # Before anything runs in it: the files as committed, changes made meanwhile included.
        await self._materialise(project_id)
        return WorkspaceOutput(path=str(path))

    @activity.defn(name="docker_adopt_pooled")
    async def adopt_pooled(self, data: AdoptInput) -> ContainerInfo:
        project_id = UUID(data.project_id)
        info = await asyncio.to_thread(self._rename, data)
        slot = slot_dir(self._data_dir, data.member.slot_id)
        workspace = workspace_dir(self._data_dir, project_id)
        async with self._workspace_lock(project_id):
            await asyncio.to_thread(swap_in_slot, slot, workspace)
        await self._materialise(project_id)
        return info

    def _rename(self, data: AdoptInput) -> ContainerInfo:
        try:
            container: Any = self._docker.containers.get(data.member.container_id)
        except docker.errors.NotFound:
            raise ApplicationError(
                "the pooled container is gone", type=CONTAINER_GONE, non_retryable=True
            ) from None
        if container.status != "running":
            raise ApplicationError(
                f"the pooled container is {container.status}",
                type=CONTAINER_GONE,
                non_retryable=True,
            )
        name = container_name(data.project_id)
        if container.name != name:
            with contextlib.suppress(docker.errors.NotFound):
                holder: Any = self._docker.containers.get(name)
                labels = holder.labels or {}
                ours = labels.get(LABEL_MANAGED) == "true"
                if not (ours and may_hold_project_name(labels, data.project_id)):
                    raise ApplicationError(
                        f"container name {name} is taken", type=NAME_TAKEN, non_retryable=True
                    )
                # The project's workflow holds no other container when it claims: a leftover.
                holder.remove(force=True)
            container.rename(name)
        return container_info(container)

    def all(self) -> list[Any]:
        return [self.prepare_workspace, self.adopt_pooled]
