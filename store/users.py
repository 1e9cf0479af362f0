"""Queries on `users`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from store import refresh_tokens
from store.db import Conn


@dataclass(frozen=True, slots=True)
class User:
    id: UUID
    email: str
    name: str
    role: str
    password_hash: str
    created_at: datetime
    disabled_at: datetime | None = None  # set by an admin: no token of this user holds

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None

    def public(self) -> dict[str, Any]:
        return {"id": str(self.id), "email": self.email, "name": self.name, "role": self.role}


_COLUMNS = "id, email, name, role, password_hash, created_at, disabled_at"


def _user(row: asyncpg.Record | None) -> User | None:
    return None if row is None else User(**dict(row))


async def create(
    conn: Conn, *, email: str, name: str, password_hash: str, role: str = "user"
) -> User | None:
    """The new user, or None when the email is taken (case-insensitively)."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO users (email, name, password_hash, role) VALUES ($1, $2, $3, $4)
        ON CONFLICT ((lower(email))) DO NOTHING
        RETURNING {_COLUMNS}
        """,
        email,
        name,
        password_hash,
        role,
    )
    return _user(row)


async def by_email(conn: Conn, email: str) -> User | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE lower(email) = lower($1)", email)
    return _user(row)


async def by_id(conn: Conn, user_id: UUID) -> User | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE id = $1", user_id)
    return _user(row)


async def set_password_hash(conn: Conn, user_id: UUID, password_hash: str) -> None:
    await conn.execute("UPDATE users SET password_hash = $2 WHERE id = $1", user_id, password_hash)


async def is_active(conn: Conn, user_id: UUID) -> bool:
    """True when the user exists and is not disabled: the check behind every token."""
    active = await conn.fetchval("SELECT disabled_at IS NULL FROM users WHERE id = $1", user_id)
    return bool(active)


async def set_disabled(conn: Conn, user_id: UUID, disabled: bool) -> User | None:
    """Disable or enable an account; None when there is no such user.

    Disabling revokes every refresh token of the user in the same transaction (enabling does
    not bring them back: the user logs in again). Open sockets and cached standings are the
    caller's to tell (`web.revocation.Revocation.changed(user_id=...)`); without that they
    notice within the recheck interval.
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            f"""
            UPDATE users SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END
            WHERE id = $1 RETURNING {_COLUMNS}
            """,
            user_id,
            disabled,
        )
        if row is not None and disabled:
            await refresh_tokens.revoke_user(conn, user_id)
    return _user(row)
