"""Dataclasses and names of the file-versioning workflows and their activities."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

RETENTION_SCHEDULE_ID = "files-retention"
RETENTION_INTERVAL = timedelta(hours=1)
# Changes arriving within this quiet period are handled as one batch (editors save often).
DEBOUNCE = timedelta(milliseconds=500)
MAX_BATCH_DELAY = timedelta(seconds=5)
# An idle entity completes; the next change starts it again with signal-with-start.
IDLE_EXIT = timedelta(minutes=10)
BATCHES_BEFORE_CONTINUE_AS_NEW = 200


def versioning_workflow_id(project_id: str) -> str:
    return f"versioning-{project_id}"


@dataclass
class FilesChanged:
    """Signal: paths of a project changed (origin: api, container, ai, workspace)."""

    paths: list[str]
    origin: str
    full_scan: bool = False  # rescan the whole workspace (after the watcher was down)


@dataclass
class VersioningState:
    project_id: str
    pending_paths: list[str] = field(default_factory=list)
    pending_origins: list[str] = field(default_factory=list)
    batches: int = 0


@dataclass
class WorkspaceImportInput:
    project_id: str
    # None: scan the whole workspace; else only these paths (a watcher's report).
    paths: list[str] | None = None


@dataclass
class WorkspaceImportOutput:
    imported: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass
class ProjectRef:
    project_id: str


@dataclass
class ProjectStats:
    files: int
    bytes: int
    languages: dict[str, int]


@dataclass
class ChangedPaths:
    project_id: str
    paths: list[str]
    origin: str


@dataclass
class RetentionInput:
    pass


@dataclass
class RetentionOutput:
    versions_pruned: int = 0
    blobs_deleted: int = 0
    blobs_kept: int = 0
