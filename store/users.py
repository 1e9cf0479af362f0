"""Queries on `users`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from store.db import Conn


@dataclass(frozen=True, slots=True)
class User:
    id: UUID
    email: str
    name: str
    role: str
    password_hash: str
    created_at: datetime

    def public(self) -> dict[str, Any]:
        return {"id": str(self.id), "email": self.email, "name": self.name, "role": self.role}


_COLUMNS = "id, email, name, role, password_hash, created_at"


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
