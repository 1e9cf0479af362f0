"""The limits a write is checked against: a file's size, a project's file count, and the
storage quota of the project's owner."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from files.errors import QuotaExceeded, TooLarge, TooManyFiles
from store import files, quotas
from store.db import Conn


def check_size(path: str, content: bytes, limit: int) -> None:
    if len(content) > limit:
        raise TooLarge(
            f"{path} is {len(content)} bytes; the limit is {limit}",
            size=len(content),
            limit=limit,
        )


class StorageCheck:
    """The owner's storage quota, checked in a write's transaction: refused when the write
    leaves the owner above the quota and holding more than before (a write that shrinks
    things always passes, so an owner above a lowered quota can clean up). Costs one lookup
    by primary keys when the owner has no quota, two sums over their files when they do."""

    def __init__(self, limit: quotas.StorageLimit, before: int) -> None:
        self.limit = limit
        self.before = before

    @classmethod
    async def begin(cls, conn: Conn, project_id: UUID) -> StorageCheck | None:
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
class FileBudget:
    """Live files of a project, counted once per batch instead of once per new file."""

    live: int | None = None

    async def claim(self, conn: Conn, project_id: UUID, limit: int) -> None:
        if self.live is None:
            self.live = await files.count_live(conn, project_id)
        if self.live >= limit:
            raise TooManyFiles(f"the project has {limit} files, the limit", limit=limit)
        self.live += 1
