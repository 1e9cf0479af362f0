"""Starts the workflows that committed transactions recorded in the outbox.

Runs in the worker. Woken by NOTIFY at commit, and polls every few seconds in case a
notification was missed (a reconnect, a relay that was down). Workflow ids are deterministic, so
starting one twice (a relay crashed after starting but before deleting the row) is harmless.
Several relays can run at once: rows are claimed with SKIP LOCKED. Each item is handled in a
span whose parent is the trace context its writer stored in the row, so a workflow started
here is part of the request that asked for it (with the client's `TracingInterceptor`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from store import outbox
from vaporform import metrics, tracing
from workflows.projects.contract import (
    ProjectCreatedInput,
    ProjectDeletionInput,
    project_created_workflow_id,
    project_deletion_workflow_id,
)
from workflows.projects.created import ProjectCreatedWorkflow
from workflows.projects.deletion import ProjectDeletionWorkflow
from workflows.shared import search_attributes

log = logging.getLogger("vaporform.outbox")

POLL_INTERVAL_S = 2.0
BATCH = 100
MAX_BACKOFF = timedelta(minutes=5)

Handler = Callable[[Client, str, dict[str, Any]], Awaitable[None]]


async def start_project_created(client: Client, task_queue: str, payload: dict[str, Any]) -> None:
    data = ProjectCreatedInput(**payload)
    await client.start_workflow(
        ProjectCreatedWorkflow.run,
        data,
        id=project_created_workflow_id(data.project_id),
        task_queue=task_queue,
        search_attributes=search_attributes(data.project_id, data.owner_id),
    )


async def start_project_deletion(client: Client, task_queue: str, payload: dict[str, Any]) -> None:
    data = ProjectDeletionInput(**payload)
    await client.start_workflow(
        ProjectDeletionWorkflow.run,
        data,
        id=project_deletion_workflow_id(data.project_id),
        task_queue=task_queue,
        search_attributes=search_attributes(data.project_id, data.requested_by),
    )


HANDLERS: dict[str, Handler] = {
    "project_created": start_project_created,
    "project_deletion": start_project_deletion,
}


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        client: Client,
        task_queue: str,
        handlers: dict[str, Handler] | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._tracer = tracer or trace.NoOpTracer()
        self._handlers = HANDLERS if handlers is None else handlers
        self._pool = pool
        self._client = client
        self._task_queue = task_queue
        self._wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        async with self._pool.acquire() as listener:
            await listener.add_listener(outbox.CHANNEL, self._notified)
            try:
                while not stop.is_set():
                    self._wake.clear()
                    while await self.relay_once() == BATCH:
                        pass  # a full batch: more may be due right now
                    waiters = [asyncio.ensure_future(e.wait()) for e in (self._wake, stop)]
                    await asyncio.wait(
                        waiters, timeout=POLL_INTERVAL_S, return_when=asyncio.FIRST_COMPLETED
                    )
                    for waiter in waiters:
                        waiter.cancel()
            finally:
                with contextlib.suppress(asyncpg.InterfaceError):
                    await listener.remove_listener(outbox.CHANNEL, self._notified)

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def relay_once(self) -> int:
        """Start what is due; the number of items handled."""
        async with self._pool.acquire() as conn, conn.transaction():
            items = await outbox.claim_due(conn, list(self._handlers), BATCH)
            finished: list[int] = []
            for item in items:
                try:
                    with self._tracer.start_as_current_span(
                        f"outbox {item.kind}",
                        context=tracing.extract(item.trace_context),
                        kind=SpanKind.CONSUMER,
                        attributes={"vaporform.outbox.attempts": item.attempts},
                    ):
                        await self._handlers[item.kind](
                            self._client, self._task_queue, item.payload
                        )
                    metrics.OUTBOX_RELAYED.labels(item.kind, "started").inc()
                except WorkflowAlreadyStartedError:
                    # Started before, by us or another relay: done.
                    metrics.OUTBOX_RELAYED.labels(item.kind, "duplicate").inc()
                except (RPCError, RuntimeError, ValueError, TypeError) as exc:
                    metrics.OUTBOX_RELAYED.labels(item.kind, "deferred").inc()
                    delay = min(MAX_BACKOFF, timedelta(seconds=2 ** min(item.attempts, 9)))
                    log.warning(
                        "outbox item deferred",
                        extra={"item": item.id, "kind": item.kind, "error": str(exc)},
                    )
                    await outbox.retry_later(conn, item.id, str(exc), delay)
                    continue
                finished.append(item.id)
            if finished:
                await outbox.done(conn, finished)
        return len(items)
