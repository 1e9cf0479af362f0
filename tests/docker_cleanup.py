"""Removing the containers a test session made, and only those.

Several test runs (and benches) may share one Docker engine: a teardown that removed every
labelled container that appeared during its window would destroy theirs. A container belongs
to this run when it is labelled with one of its projects, when it is a member of
one of this session's warm pools (pool ids embed the session's Docker queue), or when a test
made it by hand.
"""

from __future__ import annotations

import contextlib
from typing import Any

import docker
import docker.errors

from store import db
from workflows.containers.names import (
    LABEL_CREATED_BY,
    LABEL_MANAGED,
    LABEL_POOL,
    LABEL_PROJECT,
    POOL_NAME_PREFIX,
)


def managed(client: docker.DockerClient) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": f"{LABEL_MANAGED}=true"}))


async def session_projects(database_url: str) -> set[str]:
    conn = await db.connect(database_url)
    try:
        return {row["id"] for row in await conn.fetch("SELECT id::text AS id FROM projects")}
    finally:
        await conn.close()


def owned(container: Any, projects: set[str], docker_queue: str) -> bool:
    labels = container.labels
    return (
        labels.get(LABEL_PROJECT) in projects
        or docker_queue in labels.get(LABEL_POOL, "")
        or labels.get(LABEL_CREATED_BY) == "hand"
    )


async def remove_owned(
    client: docker.DockerClient,
    database_url: str,
    docker_queue: str,
    before: set[str],
    *,
    keep_pool_members: bool = False,
) -> None:
    """Force-remove this session's containers that were not there at `before`."""
    projects = await session_projects(database_url)
    for container in managed(client):
        if container.id in before or not owned(container, projects, docker_queue):
            continue
        if keep_pool_members and container.name.startswith(POOL_NAME_PREFIX):
            continue  # an unclaimed member (claimed ones are renamed): its pool drains it
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
