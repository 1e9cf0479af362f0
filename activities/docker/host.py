"""Every activity of one Docker host's worker (its own task queue), built from its clients."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Any

import docker

from activities.docker.engine import DockerActivities
from activities.docker.exec import ExecActivities
from activities.docker.pool import ContainerPoolActivities
from activities.docker.workspace import ContainerWorkspaceActivities
from activities.project_deletion import ProjectDeletionHostActivities
from files.service import FileSystem


def docker_host_activities(
    client: docker.DockerClient,
    data_dir: Path,
    files: FileSystem | None = None,
    calls: concurrent.futures.Executor | None = None,
) -> list[Any]:
    """`files` (PostgreSQL and the blob store) lets a started container see the project's files
    even when its workspace was empty on this host; without it workspaces are only created."""
    engine = DockerActivities(client, data_dir, calls)
    return [
        *engine.all(),
        *ExecActivities(client).all(),
        *ContainerPoolActivities(engine, data_dir).all(),
        *ContainerWorkspaceActivities(client, data_dir, files).all(),
        *ProjectDeletionHostActivities(data_dir, files.pool if files else None).all(),
    ]
