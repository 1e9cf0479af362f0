"""The file service's advisory locks: a project's workspace lock, and the blob GC lock.

The workspace lock (class WORKSPACE_LOCK_CLASS, one key per project) is held for a session:
writers of the project share it, and whatever must not see a write half applied to the
workspace (import, materialising, adoption, removal) takes it exclusively.

The GC lock (GC_LOCK) is shared by everything that stores blobs or must find them all
(writers until their version commits, a backup until its last blob is copied) and taken
exclusively by garbage collection, so it never deletes a blob about to be referenced.
"""

from __future__ import annotations

from uuid import UUID

from store.db import Conn

GC_LOCK = 0x7666_6763  # "vfgc"
WORKSPACE_LOCK_CLASS = 0x7677  # "vw"


def workspace_key(project_id: UUID) -> int:
    """The project's key within WORKSPACE_LOCK_CLASS (advisory keys are 32-bit)."""
    return project_id.int & 0x7FFF_FFFF


async def lock_workspace(conn: Conn, project_id: UUID, *, exclusive: bool) -> None:
    """Wait for the project's workspace lock, held until `unlock_workspace` (or the session
    ends)."""
    if exclusive:
        sql = "SELECT pg_advisory_lock($1, $2)"
    else:
        sql = "SELECT pg_advisory_lock_shared($1, $2)"
    await conn.execute(sql, WORKSPACE_LOCK_CLASS, workspace_key(project_id))


async def unlock_workspace(conn: Conn, project_id: UUID, *, exclusive: bool) -> None:
    if exclusive:
        sql = "SELECT pg_advisory_unlock($1, $2)"
    else:
        sql = "SELECT pg_advisory_unlock_shared($1, $2)"
    await conn.execute(sql, WORKSPACE_LOCK_CLASS, workspace_key(project_id))


async def share_gc_lock(conn: Conn) -> None:
    """Hold the GC lock shared until the transaction ends (a writer storing blobs)."""
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", GC_LOCK)


async def take_gc_lock(conn: Conn) -> None:
    """Hold the GC lock exclusively until the transaction ends (garbage collection)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", GC_LOCK)


async def share_gc_lock_for_session(conn: Conn) -> None:
    """Hold the GC lock shared until the connection closes (a backup, which spans pg_dump
    and the blob copy rather than one transaction)."""
    await conn.execute("SELECT pg_advisory_lock_shared($1)", GC_LOCK)
