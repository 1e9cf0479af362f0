"""Keeps a project's workspace on this host and its live versions in PostgreSQL in step.

One operation, `reconcile(project_id, paths)`, both ways: for each path it compares the row in
PostgreSQL, the copy in the workspace and the record of that copy (files/mirror_record.py),
and does what brings them together:

| the workspace copy | PostgreSQL | does |
|---|---|---|
| as recorded | the recorded content | nothing |
| as recorded | a newer version, or deleted | writes the version, or removes the copy |
| changed by a program since recorded | anything | imports it as a version by `container` |
| gone, recorded | the recorded content | imports the deletion |
| gone | a version not recorded here | writes it |
| a file no host recorded | anything | imports it |
| a file another host recorded | live, or deleted | writes the version, or removes the copy |
| a link, FIFO, device or folder | to be written or removed | a conflict: left as it is |

It reads the current state, never a change's description, so it can run at any time, twice,
or out of order with the changes that caused it, and converges on PostgreSQL's state plus what
programs changed; a program's change the watcher has not reported yet is imported, never
written over. A path moved in PostgreSQL carries its record, which still names the old path:
the copy is renamed to follow. Runs under the project's exclusive workspace lock; every call
that touches the folder goes through files/workspace.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import asyncpg

from files import workspace
from files.budget import FileBudget
from files.errors import FileSystemError
from files.locks import ProjectLock
from files.mirror_record import MirrorRecord, host_id, parse_record
from files.model import Limits, SyncReport
from files.paths import InvalidPath, normalize_path
from files.versions import write_version
from store import files, locks
from store.blobs import BlobStore
from store.db import Conn
from store.files import FileRow

log = logging.getLogger("vaporform.files")

# Where committed changes go to reach a project's workspace (on this host, or through the
# agent of the host its container runs on); answers what the workspace refused.
WorkspaceSync = Callable[[UUID, Sequence[str]], Awaitable[list[workspace.WorkspaceConflict]]]


@dataclass(slots=True)
class Reconciled:
    report: SyncReport = field(default_factory=SyncReport)
    changed: list[str] = field(default_factory=list)  # imported or deleted, in that order
    conflicts: list[workspace.WorkspaceConflict] = field(default_factory=list)
    written: int = 0  # copies written or moved into the workspace


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
        self._host: str | None = None

    def root(self, project_id: UUID) -> Path:
        return workspace.workspace_dir(self.data_dir, project_id)

    async def host(self) -> str:
        if self._host is None:
            self._host = await asyncio.to_thread(host_id, self.data_dir)
        return self._host

    async def reconcile(
        self, project_id: UUID, paths: Sequence[str] | None, *, create: bool = False
    ) -> Reconciled:
        """Bring `paths` (None: every path) of the project's workspace and PostgreSQL in step.

        Without `create`, a project with no workspace on this host is left without one."""
        done = Reconciled()
        root = self.root(project_id)
        if not create and not await asyncio.to_thread(workspace.is_present, root):
            return done
        host = await self.host()
        async with ProjectLock(self.pool, project_id, exclusive=True) as conn:
            await _Pass(self, conn, project_id, root, host, done).run(paths)
        for conflict in done.conflicts:
            log.warning(
                "the workspace refused a change",
                extra={"project_id": str(project_id), "path": conflict.path, "kind": conflict.kind},
            )
        return done


def _is_regular(why: str) -> bool:
    """Whether `read_regular`'s refusal is of a regular file (one too large to import)."""
    return why.startswith("larger than")


class _Pass:
    """One reconcile of one project, on the connection that holds its workspace lock."""

    def __init__(
        self,
        mirror: WorkspaceMirror,
        conn: Conn,
        project_id: UUID,
        root: Path,
        host: str,
        done: Reconciled,
    ) -> None:
        self.mirror = mirror
        self.conn = conn
        self.project_id = project_id
        self.root = root
        self.host = host
        self.done = done
        self.limit = mirror.limits.max_file_bytes
        self.rows: dict[str, FileRow] = {}
        self.records: dict[str, MirrorRecord] = {}  # written at the end, by row path
        self.sources: dict[str, FileRow] | None = None  # old path -> a row moved from it
        self.budget = FileBudget()

    async def run(self, paths: Sequence[str] | None) -> None:
        if paths is None:
            await self._load_live()
            listed = await asyncio.to_thread(workspace.list_files, self.root)
            asked = set(self.rows) | set(listed)
        else:
            asked = set(paths)
        todo: set[str] = set()
        for raw in asked:
            try:
                todo.add(normalize_path(raw))
            except InvalidPath as exc:
                self.done.report.skipped[raw] = exc.reason
        await self._load(todo)
        moved = [
            (row, record)
            for path in sorted(todo)
            if (row := self.rows.get(path)) is not None
            and row.deleted_at is None
            and (record := self._ours(row)) is not None
            and record.at != path
        ]
        await self._load({record.at for _, record in moved})
        for row, record in moved:
            await self._follow_move(row, record)
            todo.add(record.at)
        for path in sorted(todo):
            await self._settle(path)
        if self.records:
            stats = {path: record.encode() for path, record in self.records.items()}
            await files.set_mirror_stat(self.conn, self.project_id, stats)

    # -- what is known -------------------------------------------------------------------

    async def _load_live(self) -> None:
        for row in await files.live(self.conn, self.project_id):
            self.rows[row.path] = row
        self.sources = {}
        for row in self.rows.values():
            record = self._ours(row)
            if row.deleted_at is None and record is not None and record.at != row.path:
                self.sources[record.at] = row

    async def _load(self, paths: set[str]) -> None:
        for path in sorted(paths - set(self.rows)):
            row = await files.get(self.conn, self.project_id, path)
            if row is not None:
                self.rows[path] = row

    def _record(self, row: FileRow) -> MirrorRecord | None:
        return self.records.get(row.path) or parse_record(row.mirror_stat, row.path, self.host)

    def _ours(self, row: FileRow) -> MirrorRecord | None:
        record = self._record(row)
        return record if record is not None and record.by == self.host else None

    def _keep(self, path: str, stat: str | None, sha: str | None) -> None:
        self.records[path] = MirrorRecord(at=path, stat=stat, sha=sha, by=self.host)

    # -- one path ------------------------------------------------------------------------

    async def _settle(self, path: str, *, again: bool = True) -> None:
        row = self.rows.get(path)
        live = row is not None and row.deleted_at is None
        record = self._record(row) if row is not None else None
        ours = record if record is not None and record.by == self.host else None
        if ours is not None and ours.at != path:
            ours = None  # a copy elsewhere (a move not followed): nothing of it is here
        known = ours.stat if ours is not None and ours.sha is not None else None
        content, why = await asyncio.to_thread(
            workspace.read_regular, self.root, path, self.limit, known
        )
        if why == "unchanged":
            assert ours is not None
            assert row is not None
            if not live:
                await self._remove(path)
            elif row.sha256 != ours.sha:
                await self._write(row)
            return
        if why == "missing":
            if row is not None and live:
                # A legacy record (no sha) was current when written: the mirror was synchronous.
                if ours is not None and ours.has_copy and ours.sha in (None, row.sha256):
                    await self._import_deletion(row)
                else:
                    await self._write(row)
            elif ours is not None and ours.has_copy:
                self._keep(path, None, None)
            return
        if content is None:
            self.done.report.skipped[path] = why
            if row is not None and live:
                if not (ours is not None and ours.has_copy and ours.sha in (None, row.sha256)):
                    await self._write(row)  # refused: the conflict is reported
            elif row is not None and not _is_regular(why):
                await self._remove(path)
            return
        digest = hashlib.sha256(content).hexdigest()
        if row is not None and live and digest == row.sha256:
            self._keep(path, why, digest)
            return
        if ours is not None and ours.sha is None and ours.stat == why:
            # Untouched since a legacy record, which was current then: PostgreSQL moved on.
            await (self._write(row) if row is not None and live else self._remove(path))
            return
        if record is None and again:
            source = await self._moved_from(path)
            if source is not None:
                # Our untouched copy of a file PostgreSQL moved away, not a program's file.
                source_record = self._ours(source)
                assert source_record is not None
                await self._follow_move(source, source_record)
                await self._settle(path, again=False)
                await self._settle(source.path, again=False)
                return
        if record is not None and ours is None:
            # Another host's copy of the file, or one left where the file no longer is.
            await (self._write(row) if row is not None and live else self._remove(path))
            return
        await self._import(path, content, why, digest)

    async def _moved_from(self, path: str) -> FileRow | None:
        if self.sources is None:
            await self._load_live()
        assert self.sources is not None
        return self.sources.get(path)

    # -- acting --------------------------------------------------------------------------

    async def _follow_move(self, row: FileRow, record: MirrorRecord) -> None:
        """Rename the copy at `record.at` to the row's path, if it is still ours untouched."""
        source, target = record.at, row.path
        if self.sources is not None:
            self.sources.pop(source, None)
        _, why = await asyncio.to_thread(
            workspace.read_regular, self.root, source, self.limit, record.stat
        )
        if why != "unchanged":
            # A program changed or removed it: that copy is settled as a path of its own.
            self._keep(target, None, None)
            return
        there, found = await asyncio.to_thread(workspace.read_regular, self.root, target, 0, None)
        if there is not None or _is_regular(found):
            # A program made a file where ours is going: its file stays (and is imported).
            await self._remove(source, keep=False)
            self._keep(target, None, None)
            return
        try:
            moved = await asyncio.to_thread(
                workspace.move_file, self.root, source, target, self.mirror.uid
            )
        except workspace.WorkspaceConflict as exc:
            self.done.conflicts.append(exc)
            # Left at `source`, the copy would be imported back as a new file; its content is
            # safe in its version.
            await self._remove(source, keep=False)
            self._keep(target, None, None)
            return
        self._keep(target, record.stat if moved else None, record.sha if moved else None)
        self.done.written += int(moved)

    async def _write(self, row: FileRow) -> None:
        content = await self.mirror.blobs.get(row.sha256)
        try:
            stat = await asyncio.to_thread(
                workspace.write_file, self.root, row.path, content, self.mirror.uid
            )
        except workspace.WorkspaceConflict as exc:
            self.done.conflicts.append(exc)
            return
        self._keep(row.path, stat, row.sha256)
        self.done.written += 1

    async def _remove(self, path: str, *, keep: bool = True) -> None:
        try:
            await asyncio.to_thread(workspace.remove_file, self.root, path)
        except workspace.WorkspaceConflict as exc:
            if keep:
                self.done.conflicts.append(exc)
            return
        if keep:
            self._keep(path, None, None)

    async def _import(self, path: str, content: bytes, stat: str, digest: str) -> None:
        try:
            # One transaction per file: a refused file does not hold back the others.
            async with self.conn.transaction():
                await locks.share_gc_lock(self.conn)
                result = await write_version(
                    self.conn,
                    self.project_id,
                    path,
                    content,
                    await self.mirror.blobs.put(content),
                    budget=self.budget,
                    max_files=self.mirror.limits.max_files,
                    author_id=None,
                    author_kind="container",
                    message="changed in the workspace",
                    base_version=None,
                )
        except FileSystemError as exc:
            self.budget.live = None  # the rolled-back claim: count again next time
            self.done.report.skipped[path] = exc.message
            return
        self._keep(path, stat, digest)
        if result.changed:
            self.done.report.imported.append(path)
            self.done.changed.append(path)

    async def _import_deletion(self, row: FileRow) -> None:
        async with self.conn.transaction():
            await files.mark_deleted(self.conn, row.id)
        self._keep(row.path, None, None)
        self.done.report.deleted.append(row.path)
        self.done.changed.append(row.path)
