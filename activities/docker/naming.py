"""How the Docker host tells our containers apart: their names and labels.

A project's container is named `vaporform-<project_id>` (`container_name`), so a retried create
finds it again and a project never has two; a warm pool member is `vaporform-pool-<slot_id>`
until a project claims it and renames it. Labels (fixed at creation) say who made a container
and which workflow answers for it; the reconciler reads them back.
"""

from __future__ import annotations

from collections.abc import Mapping

from workflows.containers.names import (
    LABEL_CREATED_BY,
    LABEL_MANAGED,
    LABEL_POOL,
    LABEL_PROJECT,
    LABEL_SLOT,
    LABEL_WORKFLOW,
    POOL_NAME_PREFIX,
)


def project_labels(project_id: str, workflow_id: str, created_by: str) -> dict[str, str]:
    return {
        LABEL_MANAGED: "true",
        LABEL_PROJECT: project_id,
        LABEL_WORKFLOW: workflow_id,
        LABEL_CREATED_BY: created_by,
    }


def member_labels(pool_id: str, slot_id: str) -> dict[str, str]:
    return {
        LABEL_MANAGED: "true",
        LABEL_POOL: pool_id,
        LABEL_SLOT: slot_id,
        LABEL_WORKFLOW: pool_id,
        LABEL_CREATED_BY: "pool",
    }


def member_name(slot_id: str) -> str:
    return f"{POOL_NAME_PREFIX}{slot_id}"


def may_hold_project_name(labels: Mapping[str, str], project_id: str) -> bool:
    """Whether a container that holds the project's name is one of ours to take over: the
    project's own, or a pool member a project claimed (it keeps the pool's labels)."""
    return labels.get(LABEL_PROJECT) == project_id or bool(labels.get(LABEL_POOL))


def role(name: str) -> str:
    """`pool` for an unclaimed warm pool member, `project` for everything else of ours."""
    return "pool" if name.lstrip("/").startswith(POOL_NAME_PREFIX) else "project"
