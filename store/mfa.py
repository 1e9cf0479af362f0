"""Queries on `user_mfa` and `mfa_recovery_codes`.

Recovery codes are random strings shown to the user once; the table keeps their SHA-256 only
(they carry ~80 bits, so a plain hash is as good as a slow one), like refresh tokens.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from store.db import Conn


@dataclass(frozen=True, slots=True)
class MFA:
    user_id: UUID
    secret: str
    confirmed_at: datetime | None
    last_used_step: int | None
    created_at: datetime

    @property
    def enabled(self) -> bool:
        return self.confirmed_at is not None


@dataclass(frozen=True, slots=True)
class RecoveryState:
    total: int
    remaining: int


_COLUMNS = "user_id, secret, confirmed_at, last_used_step, created_at"


def recovery_code_hash(code: str) -> bytes:
    """The hash of a recovery code as the user may type it (any case, with or without dashes
    and spaces)."""
    normal = "".join(code.split()).replace("-", "").lower()
    return hashlib.sha256(normal.encode()).digest()


def _mfa(row: asyncpg.Record | None) -> MFA | None:
    return None if row is None else MFA(**dict(row))


async def by_user(conn: Conn, user_id: UUID) -> MFA | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM user_mfa WHERE user_id = $1", user_id)
    return _mfa(row)


async def is_enabled(conn: Conn, user_id: UUID) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM user_mfa WHERE user_id = $1"
            " AND confirmed_at IS NOT NULL)",
            user_id,
        )
    )


async def begin_enrolment(conn: Conn, user_id: UUID, secret: str) -> MFA | None:
    """Start (or restart, with a new secret) an enrolment; None when MFA is already on."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO user_mfa (user_id, secret) VALUES ($1, $2)
        ON CONFLICT (user_id) DO UPDATE
            SET secret = EXCLUDED.secret, last_used_step = NULL, created_at = now()
            WHERE user_mfa.confirmed_at IS NULL
        RETURNING {_COLUMNS}
        """,
        user_id,
        secret,
    )
    return _mfa(row)


async def accept_step(conn: Conn, user_id: UUID, step: int, *, confirming: bool) -> MFA | None:
    """Record `step` as the newest accepted time step, and confirm a pending enrolment when
    `confirming`. None when the step is not newer than the last accepted one (a replay), or
    the enrolment is not in the expected state: the check and the update are one statement,
    so two requests with the same code cannot both pass."""
    row = await conn.fetchrow(
        f"""
        UPDATE user_mfa
        SET last_used_step = $2, confirmed_at = COALESCE(confirmed_at, now())
        WHERE user_id = $1
          AND (last_used_step IS NULL OR last_used_step < $2)
          AND (confirmed_at IS NULL) = $3
        RETURNING {_COLUMNS}
        """,
        user_id,
        step,
        confirming,
    )
    return _mfa(row)


async def replace_recovery_codes(conn: Conn, user_id: UUID, codes: list[str]) -> None:
    """Forget every recovery code of the user and keep the hashes of `codes` instead."""
    async with conn.transaction():
        await conn.execute("DELETE FROM mfa_recovery_codes WHERE user_id = $1", user_id)
        await conn.executemany(
            "INSERT INTO mfa_recovery_codes (user_id, code_hash) VALUES ($1, $2)",
            [(user_id, recovery_code_hash(code)) for code in codes],
        )


async def spend_recovery_code(conn: Conn, user_id: UUID, code: str) -> bool:
    """Mark the code used; True only for the one call that spends an unused code."""
    spent = await conn.fetchval(
        """
        UPDATE mfa_recovery_codes SET used_at = now()
        WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL
        RETURNING true
        """,
        user_id,
        recovery_code_hash(code),
    )
    return bool(spent)


async def recovery_state(conn: Conn, user_id: UUID) -> RecoveryState:
    row = await conn.fetchrow(
        """
        SELECT count(*) AS total, count(*) FILTER (WHERE used_at IS NULL) AS remaining
        FROM mfa_recovery_codes WHERE user_id = $1
        """,
        user_id,
    )
    assert row is not None
    return RecoveryState(total=int(row["total"]), remaining=int(row["remaining"]))


async def remove(conn: Conn, user_id: UUID) -> bool:
    """Turn MFA off: the secret and every recovery code go. True when there was any."""
    async with conn.transaction():
        await conn.execute("DELETE FROM mfa_recovery_codes WHERE user_id = $1", user_id)
        status = await conn.execute("DELETE FROM user_mfa WHERE user_id = $1", user_id)
    return int(status.split()[-1]) > 0
