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
from typing import Any
from uuid import UUID

from quart import g, has_request_context

from store import audit
from store.db import Conn
from vaporform.logs import request_id
from web.client_ip import client_ip
from web.services import services

log = logging.getLogger("vaporform.audit")


def entry(
    action: str,
    *,
    actor_id: UUID | None,
    project_id: UUID | None = None,
    target: str | None = None,
    outcome: str = "success",
    details: Mapping[str, Any] | None = None,
) -> audit.Entry:
    rid = request_id.get()
    if rid is None and has_request_context():
        rid = g.get("request_id")
    return audit.Entry(
        action=action,
        actor_id=actor_id,
        project_id=project_id,
        target=target,
        outcome=outcome,
        details=details or {},
        ip=client_ip(),
        request_id=rid,
    )


async def record(
    conn: Conn,
    action: str,
    *,
    actor_id: UUID | None,
    project_id: UUID | None = None,
    target: str | None = None,
    outcome: str = "success",
    details: Mapping[str, Any] | None = None,
) -> None:
    """Record in the caller's transaction (the caller holds `conn` inside one)."""
    await audit.append(
        conn,
        entry(
            action,
            actor_id=actor_id,
            project_id=project_id,
            target=target,
            outcome=outcome,
            details=details,
        ),
    )


async def record_after(
    action: str,
    *,
    actor_id: UUID | None,
    project_id: UUID | None = None,
    target: str | None = None,
    outcome: str = "success",
    details: Mapping[str, Any] | None = None,
) -> None:
    """Record on a connection of its own; never fails the caller."""
    found = entry(
        action,
        actor_id=actor_id,
        project_id=project_id,
        target=target,
        outcome=outcome,
        details=details,
    )
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
