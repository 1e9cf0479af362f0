"""Names of the broker channels, in one place for the API side and the worker side alike.

Activities publish on them (file changes, AI job states, access changes); API nodes subscribe:
each collaboration room to its project's channels, the revocation watcher to `ACCESS`.
"""

from __future__ import annotations

from uuid import UUID

# API nodes hear on it that open sockets must be re-checked (web/revocation.py): a project was
# deleted, a member removed, a user disabled.
ACCESS = "access"


def node_channel(node_id: str) -> str:
    """Where one API node hears the ops other nodes send it to commit (collab/forward.py)."""
    return f"collab:node:{node_id}"


def room_channel(project_id: UUID | str) -> str:
    """Where a project's collaboration rooms on every API node talk to each other."""
    return f"project:{project_id}"


def files_channel(project_id: UUID | str) -> str:
    """Where a project's file changes are announced to API nodes."""
    return f"project:{project_id}:files"


def ai_jobs_channel(project_id: UUID | str) -> str:
    """Where a project's AI job state changes are announced.

    Collaboration rooms subscribe to it and pass each message on to their sockets as a `job`
    event: `{"type": "job", "job_id", "kind", "status"}`.
    """
    return f"project:{project_id}:jobs"
