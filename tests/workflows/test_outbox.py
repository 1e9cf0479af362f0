"""The outbox relay: started once, retried with backoff, never lost."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

import asyncpg
import pytest
from temporalio.client import Client

from store import db, outbox
from vaporform.config import Config
from vaporform.outbox_relay import OutboxRelay, start_project_created
from workflows.projects.contract import ProjectCreatedInput, project_created_workflow_id
from workflows.projects.created import ProjectCreatedWorkflow


@pytest.fixture
async def pool(config: Config) -> AsyncIterator[asyncpg.Pool]:
    found = await db.create_pool(config.database_url, min_size=1, max_size=3)
    yield found
    await found.close()


async def _refuse(client: Client, task_queue: str, payload: dict[str, Any]) -> None:
    raise RuntimeError("the service said no")


async def test_items_are_started_once_and_failures_retried_later(
    pool: asyncpg.Pool, temporal_client: Client
) -> None:
    # Kinds of this test only, so the session's relay never claims them; a task queue no
    # worker polls, so the started workflow simply waits there.
    start, refuse = f"start-{uuid.uuid4().hex}", f"refuse-{uuid.uuid4().hex}"
    relay = OutboxRelay(
        pool,
        temporal_client,
        f"outbox-test-{uuid.uuid4().hex}",
        handlers={start: start_project_created, refuse: _refuse},
    )
    project_id = str(uuid.uuid4())
    payload = asdict(
        ProjectCreatedInput(project_id=project_id, owner_id=str(uuid.uuid4()), name="x")
    )
    async with pool.acquire() as conn:
        await outbox.enqueue(conn, start, payload)
        await outbox.enqueue(conn, start, payload)  # a duplicate: the same workflow id
        failing = await outbox.enqueue(conn, refuse, {})
    assert await relay.relay_once() == 3
    handle = temporal_client.get_workflow_handle_for(
        ProjectCreatedWorkflow.run, project_created_workflow_id(project_id)
    )
    assert (await handle.describe()).id == project_created_workflow_id(project_id)
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """
            SELECT id, attempts, last_error, next_attempt_at > now() AS later FROM outbox
            WHERE kind = ANY($1::text[])
            """,
            [start, refuse],
        )
    assert [(r["id"], r["attempts"], r["later"]) for r in rows] == [(failing, 1, True)]
    assert rows[0]["last_error"] == "the service said no"
    assert await relay.relay_once() == 0, "not due again yet"
    await handle.terminate("test over")
    async with pool.acquire() as conn:
        await outbox.done(conn, [failing])
