"""Keeps a project's workspace folder and its live versions in step, both ways.

Versions are written to the workspace as they commit (`write`, `remove`, `move`), the whole
project is written out when its folder is missing (`materialise`), and what programs changed
there comes back as versions by the author `container` (`import_changes`). Every call that
touches the folder goes through files/workspace.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from uuid import UUID

import asyncpg

from files import workspace
from files.budget import FileBudget
from files.errors import FileSystemError
from files.locks import ProjectLock
from files.model import Limits, SyncReport
from files.paths import InvalidPath, normalize_path
from files.versions import write_version
from store import files, locks
from store.blobs import BlobStore
from store.db import Conn

log = logging.getLogger("vaporform.files")


class WorkspaceMirror:
    def __init__(
        self,
        pool: asyncpg.Pool,
        blobs: BlobStore,
        data_dir: Path,
        limits: Limits,
        uid: int | None,
    ) -> None:
        self.pool = pool
        self.blobs = blobs
        self.data_dir = data_dir
        self.limits = limits
        self.uid = uid

    def root(self, project_id: UUID) -> Path:
        return workspace.workspace_dir(self.data_dir, project_id)

    async def write(
        self, conn: Conn, project_id: UUID, items: Sequence[tuple[str, bytes]]
    ) -> list[workspace.WorkspaceConflict]:
        """Write files into the workspace and remember their stat so scans can skip them.

        Returns the paths the workspace refused (the others are written). Uses the caller's
        connection (which holds the project lock): taking a second one from the pool here
        would deadlock once every pooled connection is a writer waiting for one.
        """
        if not items:
            return []
        root = self.root(project_id)
        uid = self.uid

        def write_all() -> tuple[dict[str, str], list[workspace.WorkspaceConflict]]:
            stats: dict[str, str] = {}
            conflicts: list[workspace.WorkspaceConflict] = []
            for path, content in items:
                try:
                    stats[path] = workspace.write_file(root, path, content, uid)
                except workspace.WorkspaceConflict as exc:
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

    async def remove(self, project_id: UUID, path: str) -> list[workspace.WorkspaceConflict]:
        return await asyncio.to_thread(self._remove, project_id, path)

    def _remove(self, project_id: UUID, path: str) -> list[workspace.WorkspaceConflict]:
        try:
            workspace.remove_file(self.root(project_id), path)
        except workspace.WorkspaceConflict as exc:
            return [exc]
        return []

    async def move(
        self, project_id: UUID, pairs: list[tuple[str, str]]
    ) -> list[workspace.WorkspaceConflict]:
        return await asyncio.to_thread(self._move, project_id, pairs)

    def _move(
        self, project_id: UUID, pairs: list[tuple[str, str]]
    ) -> list[workspace.WorkspaceConflict]:
        root = self.root(project_id)
        conflicts: list[workspace.WorkspaceConflict] = []
        for old, new in pairs:
            try:
                workspace.move_file(root, old, new, self.uid)
            except workspace.WorkspaceConflict as exc:
                conflicts.append(exc)
                # The file is no longer at `old` in the database: a copy left there would be
                # imported back as a new file. Its content is safe in its new version.
                with contextlib.suppress(workspace.WorkspaceConflict):
                    workspace.remove_file(root, old)
        return conflicts

    async def materialise(self, project_id: UUID) -> int:
        """Write every live file into the workspace (after a restart, or a new machine)."""
        count = 0
        async with ProjectLock(self.pool, project_id, exclusive=True) as conn:
            for row in await files.live(conn, project_id):
                content = await self.blobs.get(row.sha256)
                # A refused path is logged by `write` and stays only in the database: a link
                # a program left must not stop the rest of the project appearing.
                if not await self.write(conn, project_id, [(row.path, content)]):
                    count += 1
        return count

    async def import_changes(
        self, project_id: UUID, paths: Sequence[str] | None
    ) -> tuple[SyncReport, list[str]]:
        """Import what programs changed in the workspace as versions by the author `container`.

        `paths` limits the scan to those (as reported by a watcher); None scans everything.
        Returns the report and the paths whose versions changed, in the order imported.
        """
        report = SyncReport()
        root = self.root(project_id)
        if not await asyncio.to_thread(workspace.is_present, root):
            # No workspace here (new machine, wiped data dir): that is not "everything was
            # deleted". Write it out from the database instead.
            await self.materialise(project_id)
            return report, []
        async with ProjectLock(self.pool, project_id, exclusive=True) as conn:
            known = {row.path: row for row in await files.live(conn, project_id)}
            if paths is None:
                listed = await asyncio.to_thread(workspace.list_files, root)
                candidates = set(known) | set(listed)
            else:
                candidates = set(paths)
            changed: list[str] = []
            seen_stats: dict[str, str] = {}
            budget = FileBudget()
            for raw in sorted(candidates):
                try:
                    path = normalize_path(raw)
                except InvalidPath as exc:
                    report.skipped[raw] = exc.reason
                    continue
                known_row = known.get(path)
                content, why = await asyncio.to_thread(
                    workspace.read_regular,
                    root,
                    path,
                    self.limits.max_file_bytes,
                    known_row.mirror_stat if known_row else None,
                )
                if why == "unchanged":
                    continue
                if why == "missing":
                    if known_row is not None:
                        async with conn.transaction():
                            await files.mark_deleted(conn, known_row.id)
                        report.deleted.append(path)
                        changed.append(path)
                    continue
                if content is None:
                    report.skipped[path] = why
                    continue
                try:
                    # One transaction per file: a refused file does not hold back the others.
                    async with conn.transaction():
                        await locks.share_gc_lock(conn)
                        result = await write_version(
                            conn,
                            project_id,
                            path,
                            content,
                            await self.blobs.put(content),
                            budget=budget,
                            max_files=self.limits.max_files,
                            author_id=None,
                            author_kind="container",
                            message="changed in the workspace",
                            base_version=None,
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
        return report, changed
