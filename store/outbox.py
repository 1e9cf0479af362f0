"""Queries on `outbox`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from store.db import Conn

CHANNEL = "vaporform_outbox"


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime
    # The writer's trace context (W3C headers), continued by the relay; None: none was open.
    trace_context: dict[str, str] | None = None


async def enqueue(
    conn: Conn,
    kind: str,
    payload: dict[str, Any],
    *,
    trace_context: Mapping[str, str] | None = None,
) -> int:
    """Record work, with the writer's trace context (W3C headers, `vaporform.tracing.inject`)
    for the relay to continue; the relay is woken when (and only if) the transaction commits.
    """
    item_id = await conn.fetchval(
        "INSERT INTO outbox (kind, payload, trace_context) VALUES ($1, $2, $3) RETURNING id",
        kind,
        payload,
        dict(trace_context) if trace_context else None,
    )
    await conn.execute("SELECT pg_notify($1, '')", CHANNEL)
    return int(item_id)


async def claim_due(conn: Conn, kinds: list[str], limit: int) -> list[OutboxItem]:
    """Due items of the given kinds, row-locked so other relays skip them (in a transaction).

    A relay claims only kinds it can handle, so a node running older code never takes (and
    fails) work that only newer code knows.
    """
    rows = await conn.fetch(
        """
        SELECT id, kind, payload, attempts, created_at, trace_context FROM outbox
        WHERE next_attempt_at <= now() AND kind = ANY($1::text[])
        ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED
        """,
        kinds,
        limit,
    )
    return [OutboxItem(**dict(r)) for r in rows]


async def done(conn: Conn, ids: list[int]) -> None:
    await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", ids)


async def retry_later(conn: Conn, item_id: int, error: str, delay: timedelta) -> None:
    await conn.execute(
        """
        UPDATE outbox SET attempts = attempts + 1, last_error = $2,
                          next_attempt_at = now() + $3::interval
        WHERE id = $1
        """,
        item_id,
        error[:2000],
        delay,
    )


async def pending(conn: Conn) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM outbox"))
