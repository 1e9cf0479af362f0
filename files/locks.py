"""The project's workspace lock, shared by writers and taken exclusively by whatever must not
see a write half applied (import, materialising, adoption, removal); GC's lock key.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg

from store.db import Conn

# Advisory lock keys: GC vs. every writer, and per project (second key) workspace import vs.
# writers of that project.
GC_LOCK = 0x7666_6763  # "vfgc"
WORKSPACE_LOCK_CLASS = 0x7677  # "vw"


class ProjectLock:
    """A pooled connection holding the project's workspace lock (shared or exclusive).

    Writers share it; the workspace import, materialising, a pool member's adoption and a
    workspace's removal take it exclusively, so none of them sees another half done."""

    def __init__(self, pool: asyncpg.Pool, project_id: UUID, *, exclusive: bool) -> None:
        self.pool = pool
        self.key = project_id.int & 0x7FFF_FFFF
        self.exclusive = exclusive

    async def __aenter__(self) -> Conn:
        self._acquire = self.pool.acquire()
        self.conn: Conn = await self._acquire.__aenter__()
        suffix = "" if self.exclusive else "_shared"
        await self.conn.execute(
            f"SELECT pg_advisory_lock{suffix}($1, $2)", WORKSPACE_LOCK_CLASS, self.key
        )
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        suffix = "" if self.exclusive else "_shared"
        try:
            await self.conn.execute(
                f"SELECT pg_advisory_unlock{suffix}($1, $2)", WORKSPACE_LOCK_CLASS, self.key
            )
        finally:
            await self._acquire.__aexit__(None, None, None)
