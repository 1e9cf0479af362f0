"""Errors of the file service; each carries the stable API code it answers with."""

from __future__ import annotations

from collections.abc import Sequence

from files import workspace as mirror
from files.model import WriteResult
from files.paths import InvalidPath, normalize_path


class FileSystemError(Exception):
    status = 400
    code = "file_error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class FileNotFound(FileSystemError):
    status, code = 404, "not_found"


class VersionConflict(FileSystemError):
    status, code = 409, "version_conflict"

    def __init__(self, current_version: int) -> None:
        super().__init__(
            f"the file is at version {current_version}", current_version=current_version
        )
        self.current_version = current_version


class TooLarge(FileSystemError):
    status, code = 413, "too_large"


class TooManyFiles(FileSystemError):
    status, code = 409, "too_many_files"


class PathConflict(FileSystemError):
    status, code = 409, "path_conflict"


class QuotaExceeded(FileSystemError):
    """The project's owner would hold more than their storage quota (store/quotas.py)."""

    status, code = 400, "quota_exceeded"


class WorkspaceConflict(FileSystemError):
    """What a program in the container left in the workspace (a link, a folder, a FIFO, a
    device) stands where a file must go. Raised after the commit: the versions are kept and
    listed in `results`; only the workspace copy is missing until the object goes away."""

    status, code = 409, "workspace_conflict"

    def __init__(self, conflicts: Sequence[mirror.WorkspaceConflict]) -> None:
        first = conflicts[0]
        super().__init__(
            f"{first.path} is {first.kind} in the workspace; the version was saved but not "
            "written there",
            path=first.path,
            kind=first.kind,
            conflicts=[{"path": c.path, "kind": c.kind} for c in conflicts],
        )
        self.results: list[WriteResult] = []


def invalid_path(exc: InvalidPath) -> FileSystemError:
    error = FileSystemError(f"invalid path: {exc.reason}", reason=exc.reason, **exc.limits)
    error.code = "invalid_path"
    return error


def checked_path(raw: object) -> str:
    try:
        return normalize_path(raw)
    except InvalidPath as exc:
        raise invalid_path(exc) from None
