"""What the file service takes and gives: limits, contents, results, change events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID


@dataclass(frozen=True, slots=True)
class Limits:
    max_file_bytes: int = 5 * 1024 * 1024
    max_files: int = 10_000
    search_results: int = 500
    search_timeout_ms: int = 5_000


@dataclass(frozen=True, slots=True)
class FileContent:
    path: str
    content: bytes
    encoding: str  # "utf-8" or "binary"
    version: int
    size: int
    sha256: str
    language: str | None
    updated_at: datetime
    text: str | None  # the decoded content of a UTF-8 file, decoded once when read


@dataclass(frozen=True, slots=True)
class WriteResult:
    path: str
    version: int
    created: bool
    changed: bool = True


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    project_id: UUID
    paths: tuple[str, ...]
    origin: str  # "api", "container", "ai", "system"


@dataclass(slots=True)
class SyncReport:
    imported: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def classify(content: bytes) -> tuple[str, str | None]:
    """("utf-8", text) for text files, ("binary", None) for anything else."""
    if b"\x00" in content:
        return "binary", None
    try:
        return "utf-8", content.decode("utf-8")
    except UnicodeDecodeError:
        return "binary", None
