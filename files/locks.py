"""The project's workspace lock, shared by writers and taken exclusively by whatever must not
see a write half applied (import, materialising, adoption, removal). The statements are in
store/locks.py.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg

from store import locks
from store.db import Conn


class ProjectLock:
    """A pooled connection holding the project's workspace lock (shared or exclusive).

    Writers share it; the workspace import, materialising, a pool member's adoption and a
    workspace's removal take it exclusively, so none of them sees another half done."""

    def __init__(self, pool: asyncpg.Pool, project_id: UUID, *, exclusive: bool) -> None:
        self.pool = pool
        self.project_id = project_id
        self.exclusive = exclusive

    async def __aenter__(self) -> Conn:
        self._acquire = self.pool.acquire()
        self.conn: Conn = await self._acquire.__aenter__()
        try:
            await locks.lock_workspace(self.conn, self.project_id, exclusive=self.exclusive)
        except BaseException:
            # Cancelled while waiting (a request that timed out, a stopping node): without
            # __aexit__ the connection would never go back. The pool's reset on release
            # (pg_advisory_unlock_all) frees the lock if the server granted it meanwhile.
            await self._acquire.__aexit__(None, None, None)
            raise
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        try:
            await locks.unlock_workspace(self.conn, self.project_id, exclusive=self.exclusive)
        finally:
            await self._acquire.__aexit__(None, None, None)
