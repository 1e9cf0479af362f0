"""Test helpers for the audit log and the admin routes: admins, the audit rows of an actor or a
project (read straight from PostgreSQL), and archives to import."""

from __future__ import annotations

import io
import tarfile
import uuid
from typing import Any

import asyncpg
import httpx

from store import users
from tests.support import Account, register, wait_until


async def make_admin(http: httpx.AsyncClient, pool: asyncpg.Pool, tag: str = "admin") -> Account:
    """A registered user given the admin role in PostgreSQL (the admin routes read the role
    there, so the token from registration works at once)."""
    account = await register(http, tag)
    async with pool.acquire() as conn:
        assert await users.set_role(conn, uuid.UUID(account.id), "admin") is not None
    return account


async def rows(
    pool: asyncpg.Pool,
    *,
    actor: str | None = None,
    project: str | None = None,
    target: str | None = None,
    action: str | None = None,
) -> list[dict[str, Any]]:
    """Audit rows matching every field given, oldest first."""
    clauses, args = [], []
    for column, value in (
        ("actor_id", actor),
        ("project_id", project),
        ("target", target),
        ("action", action),
    ):
        if value is not None:
            args.append(uuid.UUID(value) if column.endswith("_id") else value)
            clauses.append(f"{column} = ${len(args)}")
    sql = "SELECT * FROM audit_events"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    async with pool.acquire() as conn:
        found = await conn.fetch(sql + " ORDER BY created_at, id", *args)
    return [dict(r) for r in found]


async def actions(pool: asyncpg.Pool, **where: str) -> list[tuple[str, str]]:
    """(action, outcome) of the matching rows, oldest first."""
    return [(r["action"], r["outcome"]) for r in await rows(pool, **where)]


async def wait_for_row(pool: asyncpg.Pool, **where: str) -> dict[str, Any]:
    """The first matching row, once there is one (for events recorded after the answer)."""
    found: list[dict[str, Any]] = []

    async def recorded() -> bool:
        found[:] = await rows(pool, **where)
        return bool(found)

    await wait_until(recorded, timeout=15, what=f"an audit row {where}")
    return found[0]


def tar_gz(files: dict[str, bytes]) -> bytes:
    """A .tar.gz of these files, as `POST .../archive` takes it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()
