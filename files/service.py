"""The project file system: versioned files over PostgreSQL + blobs, mirrored to a workspace.

Every write is a new version (files/versions.py), checked against the limits in files/budget.py;
once committed, its paths go to the workspace: through the agent of the container's host (the
API's, agent/workspace_sync.py) or to one on this host (files/mirror.py). Writers of a project
share a lock that the mirror takes exclusively, so it never sees a write half committed; all
writers share a lock that blob garbage collection takes exclusively, so GC never deletes a blob
whose version is about to be committed (both locks: store/locks.py)."""

from __future__ import annotations

import asyncio
import difflib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from uuid import UUID

import asyncpg

from files import workspace as copies
from files.budget import FileBudget, StorageCheck, check_size
from files.errors import (
    FileNotFound,
    FileSystemError,
    PathConflict,
    WorkspaceConflict,
    checked_path,
)
from files.locks import ProjectLock
from files.mirror import Reconciled, WorkspaceMirror, WorkspaceSync
from files.model import ChangeEvent, FileContent, Limits, SyncReport, WriteResult, classify
from files.paths import is_under, language_of
from files.versions import write_version
from store import audit as audit_log
from store import files, locks
from store.blobs import BlobStore
from store.files import FileRow, SearchHit, VersionRow

log = logging.getLogger("vaporform.files")

# An audit event names at most this many files (an archive import may write thousands).
AUDITED_FILES = 100

Notifier = Callable[[ChangeEvent], Awaitable[None]]
Paths = Sequence[str] | None  # None: every path
Refusals = list[copies.WorkspaceConflict]  # what the workspace refused


class FileSystem:
    def __init__(
        self,
        pool: asyncpg.Pool,
        blobs: BlobStore,
        data_dir: Path,
        limits: Limits | None = None,
        *,
        workspace_uid: int | None = 1000,
        notifier: Notifier | None = None,
        workspace_sync: WorkspaceSync | None = None,
    ) -> None:
        # `workspace_sync`: where committed paths go (the API's: to the agents); None: to the
        # workspaces under `data_dir`, kept here (a Docker host's).
        self.pool = pool
        self.blobs = blobs
        self.data_dir = data_dir
        self.limits = limits or Limits()
        # Files in the workspace belong to the container's user so programs there can edit them.
        self.workspace_uid = workspace_uid if os.geteuid() == 0 else None
        self.notifier = notifier
        self.workspace_sync = workspace_sync
        self.mirror: WorkspaceMirror | None = None
        if workspace_sync is None:
            self.mirror = WorkspaceMirror(pool, blobs, data_dir, self.limits, self.workspace_uid)

    # -- reading ---------------------------------------------------------------------------

    async def read(
        self, project_id: UUID, path: str, version: int | None = None
    ) -> FileContent | None:
        path = checked_path(path)
        async with self.pool.acquire() as conn:
            row = await files.get(conn, project_id, path)
            if row is None or (row.deleted_at is not None and version is None):
                return None
            if version is None or (version == row.version and row.deleted_at is None):
                sha, size, number, when = row.sha256, row.size, row.version, row.updated_at
            else:
                found = await files.version(conn, row.id, version)
                if found is None:
                    return None
                sha, size, number, when = found.sha256, found.size, found.version, found.created_at
        content = await self.blobs.get(sha)
        encoding, text = classify(content)
        return FileContent(
            path, content, encoding, number, size, sha, language_of(path), when, text
        )

    async def listing(self, project_id: UUID, prefix: str = "") -> list[FileRow]:
        async with self.pool.acquire() as conn:
            return await files.live(conn, project_id, prefix)

    async def history(self, project_id: UUID, path: str) -> list[VersionRow] | None:
        path = checked_path(path)
        async with self.pool.acquire() as conn:
            row = await files.get(conn, project_id, path)
            return None if row is None else await files.history(conn, row.id)

    async def diff(self, project_id: UUID, path: str, old: int, new: int) -> str:
        before = await self.read(project_id, path, old)
        after = await self.read(project_id, path, new)
        if before is None or after is None:
            missing = old if before is None else new
            raise FileNotFound(f"{path} has no version {missing}", version=missing)
        if before.text is None or after.text is None:
            same = before.sha256 == after.sha256
            return "" if same else f"Binary files {path}@{old} and {path}@{new} differ\n"
        lines = difflib.unified_diff(
            before.text.splitlines(keepends=True),
            after.text.splitlines(keepends=True),
            fromfile=f"a/{path}@{old}",
            tofile=f"b/{path}@{new}",
        )
        return "".join(
            line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
            for line in lines
        )

    async def search(
        self, project_id: UUID, query: str, *, regex: bool = False, path_regex: str | None = None
    ) -> list[SearchHit]:
        async with self.pool.acquire() as conn:
            try:
                return await files.search(
                    conn,
                    project_id,
                    query,
                    regex=regex,
                    path_regex=path_regex,
                    limit=self.limits.search_results,
                    # Regular expressions come from users: bound their cost.
                    timeout_ms=self.limits.search_timeout_ms,
                )
            except asyncpg.InvalidRegularExpressionError as exc:
                error = FileSystemError(f"invalid regular expression: {exc}")
                error.code = "invalid_regex"
                raise error from None
            except asyncpg.QueryCanceledError:
                error = FileSystemError("the search took too long; narrow it down")
                error.code = "search_timeout"
                raise error from None

    # -- writing ---------------------------------------------------------------------------

    async def write(
        self,
        project_id: UUID,
        path: str,
        content: bytes,
        *,
        author_id: UUID | None,
        author_kind: str = "user",
        message: str = "",
        base_version: int | None = None,
        audit: audit_log.Entry | None = None,
    ) -> WriteResult:
        path = checked_path(path)
        results = await self.write_many(
            project_id,
            [(path, content)],
            author_id=author_id,
            author_kind=author_kind,
            message=message,
            base_versions=None if base_version is None else {path: base_version},
            audit=audit,
        )
        return results[0]

    async def write_many(
        self,
        project_id: UUID,
        items: Sequence[tuple[str, bytes]],
        *,
        author_id: UUID | None,
        author_kind: str = "user",
        message: str = "",
        base_versions: Mapping[str, int] | None = None,
        audit: audit_log.Entry | None = None,
    ) -> list[WriteResult]:
        """Write several files as one transaction: all become new versions, or none does.

        `audit` is recorded in that transaction, with the versions written; a storage quota of
        the project's owner is checked in it too."""
        checked = [(checked_path(path), content) for path, content in items]
        seen: set[str] = set()
        for path, content in checked:
            if path in seen:
                raise PathConflict(f"{path} appears twice", path=path)
            seen.add(path)
            check_size(path, content, self.limits.max_file_bytes)
        bases = base_versions or {}
        async with self._writing(project_id) as conn, conn.transaction():
            await locks.share_gc_lock(conn)
            storage = await StorageCheck.begin(conn, project_id)
            digests = await self._store_blobs([content for _, content in checked])
            budget = FileBudget()
            results = [
                await write_version(
                    conn,
                    project_id,
                    path,
                    content,
                    digest,
                    budget=budget,
                    max_files=self.limits.max_files,
                    author_id=author_id,
                    author_kind=author_kind,
                    message=message,
                    base_version=bases.get(path),
                )
                for (path, content), digest in zip(checked, digests, strict=True)
            ]
            if storage is not None:
                await storage.finish(conn)
            if audit is not None:
                written = [{"path": r.path, "version": r.version} for r in results]
                await audit_log.append(conn, _naming(audit, "files", written))
        changed = [r.path for r in results if r.changed]
        conflicts = await self._to_workspace(project_id, changed)
        if changed:
            await self._notify(project_id, changed, author_kind)
        if conflicts:
            error = WorkspaceConflict(conflicts)
            error.results = results
            raise error
        return results

    async def delete(
        self,
        project_id: UUID,
        path: str,
        *,
        author_id: UUID | None,
        author_kind: str = "user",
        audit: audit_log.Entry | None = None,
    ) -> None:
        path = checked_path(path)
        async with self._writing(project_id) as conn, conn.transaction():
            row = await files.get(conn, project_id, path, for_update=True)
            if row is None or row.deleted_at is not None:
                raise FileNotFound(f"{path} does not exist")
            await files.mark_deleted(conn, row.id)
            if audit is not None:
                await audit_log.append(conn, replace(audit, target=audit.target or path))
        conflicts = await self._to_workspace(project_id, [path])
        await self._notify(project_id, (path,), author_kind)
        if conflicts:
            raise WorkspaceConflict(conflicts)

    async def restore(
        self,
        project_id: UUID,
        path: str,
        version: int,
        *,
        author_id: UUID | None,
        audit: audit_log.Entry | None = None,
    ) -> WriteResult:
        """Make `version` the current content again, as a new version (also undeletes)."""
        path = checked_path(path)
        old = await self.read(project_id, path, version)
        if old is None:
            raise FileNotFound(f"{path} has no version {version}", version=version)
        return await self.write(
            project_id,
            path,
            old.content,
            author_id=author_id,
            message=f"restore version {version}",
            audit=audit,
        )

    async def move(
        self,
        project_id: UUID,
        source: str,
        target: str,
        *,
        author_id: UUID | None,
        audit: audit_log.Entry | None = None,
    ) -> list[tuple[str, str]]:
        """Move a file, or a whole folder, in one transaction. Returns (from, to) pairs."""
        source, target = checked_path(source), checked_path(target)
        if source == target or is_under(target, source):
            raise PathConflict("cannot move a path onto or into itself")
        async with self._writing(project_id) as conn, conn.transaction():
            single = await files.get(conn, project_id, source, for_update=True)
            if single is not None and single.deleted_at is None:
                moving = [single]
            else:
                moving = await files.live(conn, project_id, source + "/")
            if not moving:
                raise FileNotFound(f"{source} does not exist")
            pairs = [(row.path, target + row.path[len(source) :]) for row in moving]
            for _, new_path in pairs:
                checked_path(new_path)
            for row, (_, new_path) in zip(moving, pairs, strict=True):
                existing = await files.get(conn, project_id, new_path, for_update=True)
                if existing is not None:
                    if existing.deleted_at is None:
                        raise PathConflict(f"{new_path} already exists", path=new_path)
                    # A deleted file there gives way; its history goes with it.
                    await files.delete_row(conn, existing.id)
                await files.rename(conn, row.id, new_path)
            if audit is not None:
                moved = [{"from": old, "to": new} for old, new in pairs]
                await audit_log.append(conn, _naming(audit, "moved", moved))
        touched = [p for pair in pairs for p in pair]
        conflicts = await self._to_workspace(project_id, touched)
        await self._notify(project_id, touched, "user")
        if conflicts:
            raise WorkspaceConflict(conflicts)
        return pairs

    # -- the workspace mirror --------------------------------------------------------------

    def workspace(self, project_id: UUID) -> Path:
        return copies.workspace_dir(self.data_dir, project_id)

    async def reconcile_workspace(
        self, project_id: UUID, paths: Paths = None, *, create: bool = False
    ) -> Reconciled:
        """Bring `paths` (None: all) of the workspace here and PostgreSQL in step
        (files/mirror.py); what programs changed is imported and announced (`container`)."""
        if self.mirror is None:
            raise RuntimeError("this file system keeps no workspaces")
        done = await self.mirror.reconcile(project_id, paths, create=create)
        if done.changed:
            await self._notify(project_id, done.changed, "container")
        return done

    async def materialise(self, project_id: UUID) -> int:
        """Make the workspace and bring it in step; how many files were written into it."""
        return (await self.reconcile_workspace(project_id, create=True)).written

    async def sync_from_workspace(self, project_id: UUID, paths: Paths = None) -> SyncReport:
        """What programs changed in `paths` (None: all), imported; the workspace in step."""
        return (await self.reconcile_workspace(project_id, paths)).report

    # -- internals -------------------------------------------------------------------------

    def _writing(self, project_id: UUID) -> ProjectLock:
        return ProjectLock(self.pool, project_id, exclusive=False)

    async def _to_workspace(self, project_id: UUID, paths: Sequence[str]) -> Refusals:
        """Committed `paths` to the workspace, once the writer's lock is let go; what it
        refused. A failure loses nothing: the agents also hear of every change."""
        if not paths:
            return []
        try:
            if self.workspace_sync is not None:
                return await self.workspace_sync(project_id, paths)
            return (await self.reconcile_workspace(project_id, paths, create=True)).conflicts
        except Exception:
            log.exception("could not bring a change to the workspace", extra={"paths": paths})
            return []

    async def _store_blobs(self, contents: list[bytes]) -> list[str]:
        """Store blobs a few at a time in threads: each write waits on its own fsync."""
        digests: list[str] = []
        for start in range(0, len(contents), 32):
            chunk = contents[start : start + 32]
            digests.extend(await asyncio.gather(*(self.blobs.put(c) for c in chunk)))
        return digests

    async def _notify(self, project_id: UUID, paths: Sequence[str], origin: str) -> None:
        if self.notifier is None:
            return
        try:
            await self.notifier(ChangeEvent(project_id, tuple(paths), origin))
        except Exception:  # follow-up work is derived; the write itself is committed
            log.exception("could not notify about changed files", extra={"paths": list(paths)})


def _naming(
    entry: audit_log.Entry, key: str, items: Sequence[Mapping[str, object]]
) -> audit_log.Entry:
    """`entry` with the files it acted on (the first AUDITED_FILES of them, and how many)."""
    details = {**entry.details, key: list(items[:AUDITED_FILES]), "count": len(items)}
    target = entry.target
    if target is None and len(items) == 1:
        first = items[0]
        target = str(first.get("path") or first.get("from"))
    return replace(entry, details=details, target=target)
