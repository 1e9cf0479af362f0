"""The Temporal worker: builds every client, registers workflows and activities, runs."""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import asyncpg
from temporalio.client import Client
from temporalio.worker import Worker

from activities.audit import AuditActivities
from store.db import create_pool
from vaporform.config import Config
from workflows.project_created import ProjectCreatedWorkflow

log = logging.getLogger("vaporform.worker")

WORKFLOWS = [ProjectCreatedWorkflow]


def build_worker(
    client: Client, pool: asyncpg.Pool, task_queue: str, executor: ThreadPoolExecutor
) -> Worker:
    audit = AuditActivities(pool)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[audit.record_audit_event],
        activity_executor=executor,
        # A killed worker's cached workflows move to another worker within seconds, not 10.
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=2),
        graceful_shutdown_timeout=timedelta(seconds=5),
    )


async def run(config: Config, stop: asyncio.Event | None = None) -> None:
    client = await Client.connect(config.temporal_address, namespace=config.temporal_namespace)
    pool = await create_pool(config.database_url, min_size=1, max_size=config.db_pool_max)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        with ThreadPoolExecutor(max_workers=16, thread_name_prefix="activity") as executor:
            worker = build_worker(client, pool, config.task_queue, executor)
            async with worker:
                log.info("worker running", extra={"task_queue": config.task_queue})
                await stop.wait()
    finally:
        await pool.close()
