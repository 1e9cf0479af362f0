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
    mfa_required: bool = False  # set by an admin: without MFA, only enrolment is allowed

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None

    def public(self) -> dict[str, Any]:
        return {"id": str(self.id), "email": self.email, "name": self.name, "role": self.role}


_COLUMNS = "id, email, name, role, password_hash, created_at, disabled_at, mfa_required"


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


@dataclass(frozen=True, slots=True)
class Standing:
    """What every authenticated request needs to know of its user, in one lookup."""

    active: bool  # exists and is not disabled
    mfa_required: bool  # an admin requires MFA of this user


async def standing(conn: Conn, user_id: UUID) -> Standing:
    row = await conn.fetchrow(
        "SELECT disabled_at IS NULL AS active, mfa_required FROM users WHERE id = $1", user_id
    )
    return Standing(False, False) if row is None else Standing(row["active"], row["mfa_required"])


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


async def set_role(conn: Conn, user_id: UUID, role: str) -> User | None:
    row = await conn.fetchrow(
        f"UPDATE users SET role = $2 WHERE id = $1 RETURNING {_COLUMNS}", user_id, role
    )
    return _user(row)


async def set_mfa_required(conn: Conn, user_id: UUID, required: bool) -> User | None:
    row = await conn.fetchrow(
        f"UPDATE users SET mfa_required = $2 WHERE id = $1 RETURNING {_COLUMNS}",
        user_id,
        required,
    )
    return _user(row)


# Admins are changed one at a time, so "the last enabled admin" stays true while it is checked.
ADMINS_LOCK = 0x7661_646D  # "vadm"


async def lock_admins(conn: Conn) -> None:
    """Until the transaction ends, no other transaction that takes this lock changes admins."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", ADMINS_LOCK)


async def other_active_admins(conn: Conn, user_id: UUID) -> int:
    count = await conn.fetchval(
        "SELECT count(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL AND id <> $1",
        user_id,
    )
    return int(count)


@dataclass(frozen=True, slots=True)
class Summary:
    """A user as admins list them: the account, without its password hash."""

    id: UUID
    email: str
    name: str
    role: str
    created_at: datetime
    disabled_at: datetime | None
    mfa_required: bool
    mfa_enabled: bool

    def public(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "email": self.email,
            "name": self.name,
            "role": self.role,
            "created_at": self.created_at.isoformat(),
            "disabled": self.disabled_at is not None,
            "disabled_at": None if self.disabled_at is None else self.disabled_at.isoformat(),
            "mfa_required": self.mfa_required,
            "mfa_enabled": self.mfa_enabled,
        }


_SUMMARY = """
    SELECT u.id, u.email, u.name, u.role, u.created_at, u.disabled_at, u.mfa_required,
           coalesce(m.confirmed_at IS NOT NULL, false) AS mfa_enabled
    FROM users u LEFT JOIN user_mfa m ON m.user_id = u.id
"""


async def summary(conn: Conn, user_id: UUID) -> Summary | None:
    row = await conn.fetchrow(_SUMMARY + " WHERE u.id = $1", user_id)
    return None if row is None else Summary(**dict(row))


async def search(
    conn: Conn,
    *,
    text: str | None = None,
    role: str | None = None,
    disabled: bool | None = None,
    limit: int,
    after: tuple[datetime, UUID] | None = None,
) -> list[Summary]:
    """Users whose email or name contains `text` (any case), newest first, a page at a time
    (`after`: the created_at and id of the previous page's last user)."""
    clauses: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if text:
        # The trigram index serves this; LIKE's wildcards in `text` are matched as such.
        escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        clauses.append(f"(lower(u.email) || ' ' || lower(u.name)) LIKE {arg(f'%{escaped}%')}")
    if role is not None:
        clauses.append(f"u.role = {arg(role)}")
    if disabled is not None:
        clauses.append("u.disabled_at IS NOT NULL" if disabled else "u.disabled_at IS NULL")
    if after is not None:
        clauses.append(f"(u.created_at, u.id) < ({arg(after[0])}, {arg(after[1])})")
    sql = _SUMMARY
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += f" ORDER BY u.created_at DESC, u.id DESC LIMIT {arg(limit)}"
    return [Summary(**dict(row)) for row in await conn.fetch(sql, *args)]
