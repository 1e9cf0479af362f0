"""Per-user quotas set by an admin (`user_quotas`), and the storage a user's projects hold.

A limit that is None is the deployment's default: no limit on running containers and stored
bytes, `VAPORFORM_AI_BUDGET_USER_USD` for the AI budget. Where each is enforced: docs/admin.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import asyncpg

from store.db import Conn

# Transaction-scoped advisory lock per owner while a write is checked against their storage
# quota (files/budget.py), so two writes cannot both fit in the last bytes.
STORAGE_LOCK_CLASS = 0x7671  # "vq"


@dataclass(frozen=True, slots=True)
class Quotas:
    user_id: UUID
    containers_running: int | None = None
    storage_bytes: int | None = None
    ai_budget_usd: float | None = None
    updated_at: datetime | None = None  # None: never set

    def public(self) -> dict[str, object]:
        return {
            "containers_running": self.containers_running,
            "storage_bytes": self.storage_bytes,
            "ai_budget_usd": self.ai_budget_usd,
            "updated_at": None if self.updated_at is None else self.updated_at.isoformat(),
        }


def _quotas(user_id: UUID, row: asyncpg.Record | None) -> Quotas:
    if row is None:
        return Quotas(user_id)
    budget: Decimal | None = row["ai_budget_usd"]
    return Quotas(
        user_id=user_id,
        containers_running=row["containers_running"],
        storage_bytes=row["storage_bytes"],
        ai_budget_usd=None if budget is None else float(budget),
        updated_at=row["updated_at"],
    )


async def get(conn: Conn, user_id: UUID) -> Quotas:
    row = await conn.fetchrow(
        "SELECT containers_running, storage_bytes, ai_budget_usd, updated_at"
        " FROM user_quotas WHERE user_id = $1",
        user_id,
    )
    return _quotas(user_id, row)


async def put(
    conn: Conn,
    user_id: UUID,
    *,
    containers_running: int | None,
    storage_bytes: int | None,
    ai_budget_usd: float | None,
) -> Quotas:
    """Replace the user's quotas (None: the default); the caller checked the user exists."""
    row = await conn.fetchrow(
        """
        INSERT INTO user_quotas (user_id, containers_running, storage_bytes, ai_budget_usd)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (user_id) DO UPDATE SET
            containers_running = EXCLUDED.containers_running,
            storage_bytes = EXCLUDED.storage_bytes,
            ai_budget_usd = EXCLUDED.ai_budget_usd,
            updated_at = now()
        RETURNING containers_running, storage_bytes, ai_budget_usd, updated_at
        """,
        user_id,
        containers_running,
        storage_bytes,
        None if ai_budget_usd is None else Decimal(repr(ai_budget_usd)),
    )
    return _quotas(user_id, row)


async def storage_used(conn: Conn, user_id: UUID) -> int:
    """Bytes of the live files (current versions) of every project the user owns; a deleted
    project stops counting when it is hidden, before its files are purged."""
    used = await conn.fetchval(
        """
        SELECT coalesce(sum(f.size), 0) FROM projects p
        JOIN files f ON f.project_id = p.id AND f.deleted_at IS NULL
        WHERE p.owner_id = $1 AND p.deleted_at IS NULL
        """,
        user_id,
    )
    return int(used)


@dataclass(frozen=True, slots=True)
class StorageLimit:
    owner_id: UUID
    storage_bytes: int


async def storage_limit(conn: Conn, project_id: UUID) -> StorageLimit | None:
    """The storage quota of the project's owner, None when they have none (the common case:
    one lookup by primary keys)."""
    row = await conn.fetchrow(
        """
        SELECT p.owner_id, q.storage_bytes FROM projects p
        JOIN user_quotas q ON q.user_id = p.owner_id
        WHERE p.id = $1 AND q.storage_bytes IS NOT NULL
        """,
        project_id,
    )
    return None if row is None else StorageLimit(row["owner_id"], int(row["storage_bytes"]))


async def lock_storage(conn: Conn, owner_id: UUID) -> None:
    """Serialise, until the transaction ends, the writes checked against this owner's quota."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))", STORAGE_LOCK_CLASS, str(owner_id)
    )


async def ai_spent(conn: Conn, user_id: UUID) -> float:
    """What the user's AI calls cost so far, in US dollars (usage outlives projects)."""
    spent = await conn.fetchval(
        "SELECT coalesce(sum(cost_usd), 0) FROM ai_usage WHERE user_id = $1", user_id
    )
    return float(spent)
