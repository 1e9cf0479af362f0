"""The project file system: versioned files over PostgreSQL + blobs, mirrored to a workspace.

Every write is a new version. Writers of a project share a lock that the workspace importer
takes exclusively, so an import never sees a write half-applied to the workspace; all writers
share a lock that blob garbage collection takes exclusively, so GC never deletes a blob whose
version is about to be committed."""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from uuid import UUID

import asyncpg

from files import workspace as mirror
from files.errors import (
    FileNotFound,
    FileSystemError,
    PathConflict,
    QuotaExceeded,
    TooLarge,
    TooManyFiles,
    VersionConflict,
    WorkspaceConflict,
    checked_path,
)
from files.locks import GC_LOCK, ProjectLock
from files.model import ChangeEvent, FileContent, Limits, SyncReport, WriteResult, classify
from files.paths import InvalidPath, is_under, language_of, normalize_path
from files.workspace import workspace_dir
from store import audit as audit_log
from store import files, quotas
from store.blobs import BlobStore, build_blob_store
from store.db import Conn
from store.files import FileRow, SearchHit, VersionRow
from vaporform.config import Config

log = logging.getLogger("vaporform.files")

# An audit event names at most this many files (an archive import may write thousands).
AUDITED_FILES = 100


Notifier = Callable[[ChangeEvent], Awaitable[None]]


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
    ) -> None:
        self.pool = pool
        self.blobs = blobs
        self.data_dir = data_dir
        self.limits = limits or Limits()
        # Files in the workspace belong to the container's user so programs there can edit them.
        self.workspace_uid = workspace_uid if os.geteuid() == 0 else None
        self.notifier = notifier

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
        async with self.pool.acquire() as conn, conn.transaction():
            # Regular expressions come from users: bound their cost.
            await conn.execute(
                f"SET LOCAL statement_timeout = {int(self.limits.search_timeout_ms)}"
            )
            try:
                return await files.search(
                    conn,
                    project_id,
                    query,
                    regex=regex,
                    path_regex=path_regex,
                    limit=self.limits.search_results,
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
            self._check_size(path, content)
        bases = base_versions or {}
        async with self._writing(project_id) as conn:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", GC_LOCK)
                storage = await _StorageCheck.begin(conn, project_id)
                digests = await self._store_blobs([content for _, content in checked])
                budget = _FileBudget()
                results = [
                    await self._write_locked(
                        conn,
                        project_id,
                        path,
                        content,
                        digest,
                        budget,
                        author_id,
                        author_kind,
                        message,
                        bases.get(path),
                    )
                    for (path, content), digest in zip(checked, digests, strict=True)
                ]
                if storage is not None:
                    await storage.finish(conn)
                if audit is not None:
                    written = [{"path": r.path, "version": r.version} for r in results]
                    await audit_log.append(conn, _naming(audit, "files", written))
            conflicts = await self._mirror_all(
                conn,
                project_id,
                [item for item, result in zip(checked, results, strict=True) if result.changed],
            )
        changed = [r.path for r in results if r.changed]
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
        async with self._writing(project_id) as conn:
            async with conn.transaction():
                row = await files.get(conn, project_id, path, for_update=True)
                if row is None or row.deleted_at is not None:
                    raise FileNotFound(f"{path} does not exist")
                await files.mark_deleted(conn, row.id)
                if audit is not None:
                    await audit_log.append(conn, replace(audit, target=audit.target or path))
            conflicts = await asyncio.to_thread(self._unmirror, project_id, path)
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
        async with self._writing(project_id) as conn:
            async with conn.transaction():
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
            conflicts = await asyncio.to_thread(self._mirror_moves, project_id, pairs)
        await self._notify(project_id, tuple(p for pair in pairs for p in pair), "user")
        if conflicts:
            raise WorkspaceConflict(conflicts)
        return pairs

    # -- internals -------------------------------------------------------------------------

    def _check_size(self, path: str, content: bytes) -> None:
        if len(content) > self.limits.max_file_bytes:
            raise TooLarge(
                f"{path} is {len(content)} bytes; the limit is {self.limits.max_file_bytes}",
                size=len(content),
                limit=self.limits.max_file_bytes,
            )

    def _writing(self, project_id: UUID) -> ProjectLock:
        return ProjectLock(self.pool, project_id, exclusive=False)

    async def _store_blobs(self, contents: list[bytes]) -> list[str]:
        """Store blobs a few at a time in threads: each write waits on its own fsync."""
        digests: list[str] = []
        for start in range(0, len(contents), 32):
            chunk = contents[start : start + 32]
            digests.extend(await asyncio.gather(*(self.blobs.put(c) for c in chunk)))
        return digests

    async def _write_locked(
        self,
        conn: Conn,
        project_id: UUID,
        path: str,
        content: bytes,
        sha256: str,
        budget: _FileBudget,
        author_id: UUID | None,
        author_kind: str,
        message: str,
        base_version: int | None,
    ) -> WriteResult:
        """One new version; the caller holds the locks and stored the blob (`sha256`)."""
        row = await files.get(conn, project_id, path, for_update=True)
        if row is None:
            await files.insert_placeholder(conn, project_id, path)
            row = await files.get(conn, project_id, path, for_update=True)
            assert row is not None
        live = row.deleted_at is None
        current = row.version if live else 0
        if base_version is not None and base_version != current:
            raise VersionConflict(current)
        if live and row.sha256 == sha256:
            return WriteResult(path, row.version, created=False, changed=False)
        if not live:
            await budget.claim(conn, project_id, self.limits.max_files)
        encoding, text = classify(content)
        number = row.version + 1
        await files.add_version(
            conn,
            file_id=row.id,
            version=number,
            path=path,
            sha256=sha256,
            size=len(content),
            author_id=author_id,
            author_kind=author_kind,
            message=message,
        )
        await files.set_current(
            conn,
            row.id,
            version=number,
            encoding=encoding,
            language=language_of(path),
            size=len(content),
            sha256=sha256,
            text=text,
        )
        return WriteResult(path, number, created=not live)

    async def _notify(self, project_id: UUID, paths: Sequence[str], origin: str) -> None:
        if self.notifier is None:
            return
        try:
            await self.notifier(ChangeEvent(project_id, tuple(paths), origin))
        except Exception:  # follow-up work is derived; the write itself is committed
            log.exception("could not notify about changed files", extra={"paths": list(paths)})

    # -- the workspace mirror --------------------------------------------------------------

    def workspace(self, project_id: UUID) -> Path:
        return workspace_dir(self.data_dir, project_id)

    async def _mirror_all(
        self, conn: Conn, project_id: UUID, items: Sequence[tuple[str, bytes]]
    ) -> list[mirror.WorkspaceConflict]:
        """Write files into the workspace and remember their stat so scans can skip them.

        Returns the paths the workspace refused (the others are written). Uses the caller's
        connection (which holds the project lock): taking a second one from the pool here
        would deadlock once every pooled connection is a writer waiting for one.
        """
        if not items:
            return []
        root = self.workspace(project_id)
        uid = self.workspace_uid

        def write_all() -> tuple[dict[str, str], list[mirror.WorkspaceConflict]]:
            stats: dict[str, str] = {}
            conflicts: list[mirror.WorkspaceConflict] = []
            for path, content in items:
                try:
                    stats[path] = mirror.write_file(root, path, content, uid)
                except mirror.WorkspaceConflict as exc:
                    conflicts.append(exc)
            return stats, conflicts

        stats, conflicts = await asyncio.to_thread(write_all)
        if stats:
            await files.set_mirror_stat(conn, project_id, stats)
        for conflict in conflicts:
            log.warning(
                "the workspace refused a file",
                extra={"project_id": str(project_id), "path": conflict.path, "kind": conflict.kind},
            )
        return conflicts

    def _unmirror(self, project_id: UUID, path: str) -> list[mirror.WorkspaceConflict]:
        try:
            mirror.remove_file(self.workspace(project_id), path)
        except mirror.WorkspaceConflict as exc:
            return [exc]
        return []

    def _mirror_moves(
        self, project_id: UUID, pairs: list[tuple[str, str]]
    ) -> list[mirror.WorkspaceConflict]:
        root = self.workspace(project_id)
        conflicts: list[mirror.WorkspaceConflict] = []
        for old, new in pairs:
            try:
                mirror.move_file(root, old, new, self.workspace_uid)
            except mirror.WorkspaceConflict as exc:
                conflicts.append(exc)
                # The file is no longer at `old` in the database: a copy left there would be
                # imported back as a new file. Its content is safe in its new version.
                with contextlib.suppress(mirror.WorkspaceConflict):
                    mirror.remove_file(root, old)
        return conflicts

    async def materialise(self, project_id: UUID) -> int:
        """Write every live file into the workspace (after a restart, or a new machine)."""
        count = 0
        async with ProjectLock(self.pool, project_id, exclusive=True) as conn:
            for row in await files.live(conn, project_id):
                content = await self.blobs.get(row.sha256)
                # A refused path is logged by _mirror_all and stays only in the database: a
                # link a program left must not stop the rest of the project appearing.
                if not await self._mirror_all(conn, project_id, [(row.path, content)]):
                    count += 1
        return count

    async def sync_from_workspace(
        self, project_id: UUID, paths: Sequence[str] | None = None
    ) -> SyncReport:
        """Import what programs changed in the workspace as versions by the author `container`.

        `paths` limits the scan to those (as reported by a watcher); None scans everything.
        """
        report = SyncReport()
        root = self.workspace(project_id)
        if not await asyncio.to_thread(root.is_dir):
            # No workspace here (new machine, wiped data dir): that is not "everything was
            # deleted". Write it out from the database instead.
            await self.materialise(project_id)
            return report
        async with ProjectLock(self.pool, project_id, exclusive=True) as conn:
            known = {row.path: row for row in await files.live(conn, project_id)}
            if paths is None:
                candidates = set(known) | set(await asyncio.to_thread(mirror.list_files, root))
            else:
                candidates = set(paths)
            changed: list[str] = []
            seen_stats: dict[str, str] = {}
            budget = _FileBudget()
            for raw in sorted(candidates):
                try:
                    path = normalize_path(raw)
                except InvalidPath as exc:
                    report.skipped[raw] = exc.reason
                    continue
                known_row = known.get(path)
                content, why = await asyncio.to_thread(
                    mirror.read_regular,
                    root,
                    path,
                    self.limits.max_file_bytes,
                    known_row.mirror_stat if known_row else None,
                )
                if why == "unchanged":
                    continue
                if why == "missing":
                    row = known.get(path)
                    if row is not None:
                        async with conn.transaction():
                            await files.mark_deleted(conn, row.id)
                        report.deleted.append(path)
                        changed.append(path)
                    continue
                if content is None:
                    report.skipped[path] = why
                    continue
                try:
                    # One transaction per file: a refused file does not hold back the others.
                    async with conn.transaction():
                        await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", GC_LOCK)
                        result = await self._write_locked(
                            conn,
                            project_id,
                            path,
                            content,
                            await self.blobs.put(content),
                            budget,
                            None,
                            "container",
                            "changed in the workspace",
                            None,
                        )
                except FileSystemError as exc:
                    budget.live = None  # the rolled-back claim: count again next time
                    report.skipped[path] = exc.message
                    continue
                seen_stats[path] = why
                if result.changed:
                    report.imported.append(path)
                    changed.append(path)
            if seen_stats:
                await files.set_mirror_stat(conn, project_id, seen_stats)
        if changed:
            await self._notify(project_id, changed, "container")
        return report


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


class _StorageCheck:
    """The owner's storage quota, checked in a write's transaction: refused when the write
    leaves the owner above the quota and holding more than before (a write that shrinks
    things always passes, so an owner above a lowered quota can clean up). Costs one lookup
    by primary keys when the owner has no quota, two sums over their files when they do."""

    def __init__(self, limit: quotas.StorageLimit, before: int) -> None:
        self.limit = limit
        self.before = before

    @classmethod
    async def begin(cls, conn: Conn, project_id: UUID) -> _StorageCheck | None:
        limit = await quotas.storage_limit(conn, project_id)
        if limit is None:
            return None
        await quotas.lock_storage(conn, limit.owner_id)
        return cls(limit, await quotas.storage_used(conn, limit.owner_id))

    async def finish(self, conn: Conn) -> None:
        after = await quotas.storage_used(conn, self.limit.owner_id)
        if after > self.limit.storage_bytes and after > self.before:
            raise QuotaExceeded(
                f"this would store {after} bytes in the owner's projects; their quota is "
                f"{self.limit.storage_bytes}",
                limit="storage_bytes",
                requested=after,
                maximum=self.limit.storage_bytes,
            )


@dataclass(slots=True)
class _FileBudget:
    """Live files of a project, counted once per batch instead of once per new file."""

    live: int | None = None

    async def claim(self, conn: Conn, project_id: UUID, limit: int) -> None:
        if self.live is None:
            self.live = await files.count_live(conn, project_id)
        if self.live >= limit:
            raise TooManyFiles(f"the project has {limit} files, the limit", limit=limit)
        self.live += 1


def build_filesystem(
    config: Config, pool: asyncpg.Pool, *, notifier: Notifier | None = None
) -> FileSystem:
    limits = Limits(max_file_bytes=config.max_file_bytes, max_files=config.max_files_per_project)
    blobs = build_blob_store(config)
    return FileSystem(pool, blobs, config.data_dir, limits, notifier=notifier)
