"""File-system side effects: workspace import, project stats, announcements, retention."""

from __future__ import annotations

import json
from collections import Counter
from uuid import UUID

import asyncpg
from temporalio import activity

from collab.broker import Broker
from collab.channels import files_channel
from files.service import FileSystem
from store import files, locks, projects
from workflows.files.contract import (
    ChangedPaths,
    ProjectRef,
    ProjectStats,
    RetentionInput,
    RetentionOutput,
    WorkspaceImportInput,
    WorkspaceImportOutput,
)


class FileActivities:
    def __init__(self, pool: asyncpg.Pool, fs: FileSystem, broker: Broker | None) -> None:
        self._pool = pool
        self._fs = fs
        self._broker = broker

    @activity.defn(name="import_workspace_changes")
    async def import_workspace_changes(self, data: WorkspaceImportInput) -> WorkspaceImportOutput:
        report = await self._fs.sync_from_workspace(UUID(data.project_id), data.paths)
        return WorkspaceImportOutput(report.imported, report.deleted, report.skipped)

    @activity.defn(name="project_is_live")
    async def project_is_live(self, data: ProjectRef) -> bool:
        """The project exists and is not being deleted."""
        async with self._pool.acquire() as conn:
            return await projects.is_live(conn, UUID(data.project_id))

    @activity.defn(name="refresh_project_stats")
    async def refresh_project_stats(self, data: ProjectRef) -> ProjectStats:
        """Keep `metadata.files` of the project current (count, bytes, languages)."""
        project_id = UUID(data.project_id)
        async with self._pool.acquire() as conn:
            rows = await files.live(conn, project_id)
            languages = Counter(row.language or "other" for row in rows)
            stats = ProjectStats(len(rows), sum(row.size for row in rows), dict(languages))
            await projects.set_file_stats(
                conn,
                project_id,
                {"count": stats.files, "bytes": stats.bytes, "languages": stats.languages},
            )
        return stats

    @activity.defn(name="publish_file_changes")
    async def publish_file_changes(self, data: ChangedPaths) -> None:
        """Tell every API node, which tell the project's editors (at-most-once, like pub/sub)."""
        if self._broker is None or not data.paths:
            return
        message = {"type": "files_changed", "paths": data.paths, "origin": data.origin}
        await self._broker.publish(files_channel(data.project_id), json.dumps(message).encode())

    @activity.defn(name="prune_versions")
    async def prune_versions(self, data: RetentionInput) -> RetentionOutput:
        """Drop versions beyond `config.retention.keep_versions` of each project that sets it."""
        pruned = 0
        async with self._pool.acquire() as conn:
            for project_id, keep in await projects.retention_policies(conn):
                if keep >= 1:
                    pruned += await files.prune_versions(conn, project_id, keep)
                activity.heartbeat(str(project_id))
        return RetentionOutput(versions_pruned=pruned)

    @activity.defn(name="collect_garbage")
    async def collect_garbage(self, data: RetentionInput) -> RetentionOutput:
        """Delete blobs no version references.

        Writers hold the GC lock shared from before they store a blob until their version
        commits; holding it exclusively here means no blob can be between "stored" and
        "referenced".
        """
        deleted = kept = 0
        blobs = self._fs.blobs
        async with self._pool.acquire() as conn, conn.transaction():
            await locks.take_gc_lock(conn)
            referenced = await files.referenced_digests(conn)
            async for digest in blobs.digests():  # the local disk or the S3 bucket
                if digest in referenced:
                    kept += 1
                elif await blobs.delete(digest):
                    deleted += 1
                if (deleted + kept) % 1000 == 0:
                    activity.heartbeat(deleted + kept)
        return RetentionOutput(blobs_deleted=deleted, blobs_kept=kept)
