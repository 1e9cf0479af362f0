"""What collaboration needs from the file system: read a file's text, write a new version.

A port so the live-document code does not depend on how files are stored:
``FileSystemFiles`` adapts the project's file system (``files.service.FileSystem``);
``MemoryFiles`` keeps versions in a dict, for an API without a file system and for tests of
the submit path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol
from uuid import UUID

from collab.errors import CollabError
from files.errors import VersionConflict, WorkspaceConflict
from files.service import FileSystem
from store.audit import Entry


@dataclass(frozen=True, slots=True)
class FileText:
    path: str
    text: str
    version: int


class FileConflict(Exception):
    """The file moved on since `base_version`."""

    def __init__(self, current_version: int) -> None:
        super().__init__(f"the file is at version {current_version}")
        self.current_version = current_version


def not_text(path: str) -> CollabError:
    return CollabError("not_text", f"{path} is not a text file", {"path": path})


class DocumentFiles(Protocol):
    async def read(
        self, project_id: UUID, path: str, version: int | None = None
    ) -> FileText | None:
        """The file's text (None when missing); CollabError `not_text` when binary."""
        ...

    async def write(
        self,
        project_id: UUID,
        path: str,
        text: str,
        *,
        author_id: UUID | None,
        message: str,
        base_version: int | None,
    ) -> int:
        """Write a new version; its number. FileConflict when `base_version` is stale."""
        ...


@dataclass
class MemoryFiles:
    versions: dict[tuple[UUID, str], list[str]] = field(default_factory=dict)

    def put(self, project_id: UUID, path: str, text: str) -> int:
        found = self.versions.setdefault((project_id, path), [])
        found.append(text)
        return len(found)

    async def read(
        self, project_id: UUID, path: str, version: int | None = None
    ) -> FileText | None:
        found = self.versions.get((project_id, path))
        if not found:
            return None
        number = len(found) if version is None else version
        if not 1 <= number <= len(found):
            return None
        return FileText(path, found[number - 1], number)

    async def write(
        self,
        project_id: UUID,
        path: str,
        text: str,
        *,
        author_id: UUID | None,
        message: str,
        base_version: int | None,
    ) -> int:
        current = len(self.versions.get((project_id, path), []))
        if base_version is not None and base_version != current:
            raise FileConflict(current)
        return self.put(project_id, path, text)


class FileSystemFiles:
    """The port over the project's versioned file system."""

    def __init__(self, fs: FileSystem) -> None:
        self._fs = fs

    async def read(
        self, project_id: UUID, path: str, version: int | None = None
    ) -> FileText | None:
        found = await self._fs.read(project_id, path, version)
        if found is None:
            return None
        text = found.text
        if text is None:
            raise not_text(path)
        return FileText(found.path, text, found.version)

    async def write(
        self,
        project_id: UUID,
        path: str,
        text: str,
        *,
        author_id: UUID | None,
        message: str,
        base_version: int | None,
    ) -> int:
        try:
            result = await self._fs.write(
                project_id,
                path,
                text.encode("utf-8"),
                author_id=author_id,
                author_kind="user" if author_id is not None else "system",
                message=message,
                base_version=base_version,
                # A checkpoint of live edits is audited, never the keystrokes themselves.
                audit=Entry(
                    "file.checkpoint",
                    actor_id=author_id,
                    project_id=project_id,
                    target=path,
                    details={"message": message},
                ),
            )
        except VersionConflict as exc:
            raise FileConflict(exc.current_version) from exc
        except WorkspaceConflict as exc:
            # The version is committed; only the workspace copy was refused (and logged).
            return exc.results[0].version
        return result.version
