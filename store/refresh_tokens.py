"""Queries on `refresh_tokens`: rotation with reuse detection.

Tokens are random strings handed to the client once; the table keeps their SHA-256 only, so a
database leak does not leak usable tokens.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from store.db import Conn


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class RefreshToken:
    id: UUID
    family_id: UUID
    user_id: UUID
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None


class Outcome(enum.Enum):
    ROTATED = "rotated"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"
    REUSED = "reused"


async def issue(conn: Conn, *, user_id: UUID, family_id: UUID, token: str, ttl: timedelta) -> None:
    await conn.execute(
        """
        INSERT INTO refresh_tokens (family_id, user_id, token_hash, expires_at)
        VALUES ($1, $2, $3, now() + $4::interval)
        """,
        family_id,
        user_id,
        token_hash(token),
        ttl,
    )


async def rotate(
    conn: Conn, *, token: str, new_token: str, ttl: timedelta
) -> tuple[Outcome, RefreshToken | None]:
    """Spend `token` and issue `new_token` in its family, in one transaction.

    A token presented a second time means it was copied: the whole family is revoked, so the
    thief's newer token dies with the victim's.
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            """
            SELECT id, family_id, user_id, expires_at, used_at, revoked_at
            FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE
            """,
            token_hash(token),
        )
        if row is None:
            return Outcome.UNKNOWN, None
        current = RefreshToken(**dict(row))
        if current.revoked_at is not None:
            return Outcome.REVOKED, current
        if current.used_at is not None:
            await revoke_family(conn, current.family_id)
            return Outcome.REUSED, current
        expired = await conn.fetchval("SELECT $1::timestamptz <= now()", current.expires_at)
        if expired:
            return Outcome.EXPIRED, current
        await conn.execute("UPDATE refresh_tokens SET used_at = now() WHERE id = $1", current.id)
        await issue(
            conn, user_id=current.user_id, family_id=current.family_id, token=new_token, ttl=ttl
        )
        return Outcome.ROTATED, current


async def revoke_family(conn: Conn, family_id: UUID) -> int:
    status = await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
        family_id,
    )
    return int(status.split()[-1])


async def revoke_user(conn: Conn, user_id: UUID) -> int:
    """Revoke every live refresh token of a user (the account was disabled)."""
    status = await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        user_id,
    )
    return int(status.split()[-1])


async def revoke_token(conn: Conn, *, token: str, user_id: UUID) -> bool:
    """Revoke the family of `token` when it belongs to `user_id`; True when one was found."""
    family = await conn.fetchval(
        "SELECT family_id FROM refresh_tokens WHERE token_hash = $1 AND user_id = $2",
        token_hash(token),
        user_id,
    )
    if family is None:
        return False
    await revoke_family(conn, family)
    return True
