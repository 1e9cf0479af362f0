"""Audit events as the API records them: the store's `Entry` (store/audit.py) with the client
address (web/client_ip.py) and the request id of the request at hand.

`record` writes in the caller's transaction, so the action and its row commit together (one
INSERT on a connection already held). `record_after` is for actions that have no transaction
of ours (a workflow started, a socket opened, a refused login): one INSERT on a connection of
its own, after the fact; if that fails the action stands and the event goes to the log.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, TypedDict, Unpack
from uuid import UUID

from quart import g, has_request_context

from store import audit
from store.db import Conn
from vaporform.logs import request_id
from web.client_ip import client_ip
from web.services import services

log = logging.getLogger("vaporform.audit")


class Fields(TypedDict, total=False):
    """What an event may say beyond its action and actor (store/audit.py `Entry`)."""

    project_id: UUID | None
    target: str | None
    outcome: str
    details: Mapping[str, Any] | None


def entry(action: str, *, actor_id: UUID | None, **fields: Unpack[Fields]) -> audit.Entry:
    rid = request_id.get()
    if rid is None and has_request_context():
        rid = g.get("request_id")
    return audit.Entry(
        action=action,
        actor_id=actor_id,
        project_id=fields.get("project_id"),
        target=fields.get("target"),
        outcome=fields.get("outcome", "success"),
        details=fields.get("details") or {},
        ip=client_ip(),
        request_id=rid,
    )


async def record(
    conn: Conn, action: str, *, actor_id: UUID | None, **fields: Unpack[Fields]
) -> None:
    """Record in the caller's transaction (the caller holds `conn` inside one)."""
    await audit.append(conn, entry(action, actor_id=actor_id, **fields))


async def record_after(action: str, *, actor_id: UUID | None, **fields: Unpack[Fields]) -> None:
    """Record on a connection of its own; never fails the caller."""
    found = entry(action, actor_id=actor_id, **fields)
    try:
        async with services().pool.acquire() as conn:
            await audit.append(conn, found)
    except Exception:
        log.exception(
            "an audit event could not be recorded",
            extra={
                "action": found.action,
                "actor_id": str(found.actor_id) if found.actor_id else None,
                "project_id": str(found.project_id) if found.project_id else None,
                "target": found.target,
                "outcome": found.outcome,
            },
        )
