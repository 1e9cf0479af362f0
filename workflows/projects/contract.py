"""Dataclasses, names and the retry policy of the project lifecycle workflows (`ProjectCreated`,
`ProjectDeletion`) and their activities.

One dataclass in, one dataclass out; every later field gets a default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio.common import RetryPolicy

# "Retried until done": no attempt limit, at most a minute between attempts. A step that cannot
# succeed yet (a Docker host that is down) keeps the workflow open, visible in the Temporal UI.
DELETION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=0,
)


def project_deletion_workflow_id(project_id: str) -> str:
    return f"project-deletion-{project_id}"


@dataclass(frozen=True)
class ProjectDeletionInput:
    project_id: str
    requested_by: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class ProjectDeletionOutput:
    docker_queues: list[str] = field(default_factory=list)  # the hosts that served it
    container_removed: bool = False
    workflows_ended: list[str] = field(default_factory=list)
    workspaces_removed: int = 0
    purged: bool = False  # False: an earlier run had purged it already


@dataclass(frozen=True)
class DeletionRef:
    project_id: str


@dataclass(frozen=True)
class ContainerEnded:
    """What the project's container workflow recorded: the Docker host (queue) that served it
    and its container; None when it never had one (or its history is gone from Temporal)."""

    docker_queue: str | None = None
    container_id: str | None = None
    was_running: bool = False


@dataclass(frozen=True)
class EndWorkflowsInput:
    project_id: str
    keep: list[str] = field(default_factory=list)  # workflow ids not to end (the deletion)


@dataclass(frozen=True)
class WorkflowsEnded:
    ended: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SocketsClosed:
    announced: bool  # False: no broker (one process), the API's own re-check closes them


@dataclass(frozen=True)
class Purged:
    purged: bool
    files: int = 0


@dataclass(frozen=True)
class WorkspaceRemoved:
    removed: bool
    path: str = ""


def project_created_workflow_id(project_id: str) -> str:
    return f"project-created-{project_id}"


@dataclass(frozen=True)
class ProjectCreatedInput:
    project_id: str
    owner_id: str
    name: str
    request_id: str | None = None
    # For the audit event: the client's address and when the project was made (ISO 8601).
    client_ip: str | None = None
    created_at: str | None = None


@dataclass(frozen=True)
class ProjectCreatedOutput:
    audit_recorded: bool
