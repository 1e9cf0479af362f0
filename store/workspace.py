"""Where a project's materialised working directory lives on this machine.

The directory mirrors the latest version of every file of the project; it is what the
project's container bind-mounts at `/workspace`, and changes made inside it are imported back
as new versions.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID


def workspaces_root(data_dir: Path) -> Path:
    return data_dir / "workspaces"


def workspace_dir(data_dir: Path, project_id: UUID) -> Path:
    return workspaces_root(data_dir) / str(project_id)
