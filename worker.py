"""The Temporal worker: builds every client, registers workflows and activities, runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.ai.factory import build_provider
from activities.ai.jobs import AIActivities
from activities.ai.provider import Provider
from activities.audit import AuditActivities
from activities.containers import ContainerControlActivities
from activities.files import FileActivities
from collab.broker import Broker, RedisBroker
from store.ai_budget import Budgets
from store.db import create_pool
from store.filesystem import FileSystem, build_filesystem
from store.workspace import workspaces_root
from vaporform.config import AISettings, Config
from vaporform.outbox_relay import OutboxRelay
from vaporform.workspace_watch import watch_workspaces
from workflows.ai_changes import CodeGenerationWorkflow, DebugWorkflow
from workflows.ai_review import CodeReviewWorkflow
from workflows.ai_tests import TestGenerationWorkflow
from workflows.container import ContainerWorkflow
from workflows.container_ops import ExecWorkflow, ListImagesWorkflow
from workflows.container_pool import ContainerPoolWorkflow
from workflows.container_pool_control import configured_pools, ensure_pools
from workflows.files_shared import RETENTION_INTERVAL, RETENTION_SCHEDULE_ID, RetentionInput
from workflows.project_created import ProjectCreatedWorkflow
from workflows.reconcile import ReconcileWorkflow
from workflows.reconcile_schedule import ensure_reconcile_schedule
from workflows.versioning import RetentionWorkflow, VersioningWorkflow, signal_files_changed

log = logging.getLogger("vaporform.worker")

# The sandbox re-imports workflow modules for every new workflow instance; our shared modules
# hold only dataclasses and constants, so passing them through is safe and takes ~60 ms off
# every workflow's first task (measured on ContainerWorkflow: 75 ms -> 17 ms).
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "workflows.shared",
        "workflows.container_shared",
        "workflows.files_shared",
        "workflows.ai_shared",
    )
)

WORKFLOWS = [
    ProjectCreatedWorkflow,
    ContainerWorkflow,
    ContainerPoolWorkflow,
    ExecWorkflow,
    ListImagesWorkflow,
    ReconcileWorkflow,
    VersioningWorkflow,
    RetentionWorkflow,
    CodeReviewWorkflow,
    TestGenerationWorkflow,
    DebugWorkflow,
    CodeGenerationWorkflow,
]


def budgets_of(settings: AISettings) -> Budgets:
    return Budgets(settings.budget_project_usd, settings.budget_user_usd)


def build_worker(
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    executor: ThreadPoolExecutor,
    *,
    files: FileSystem,
    broker: Broker | None = None,
    ai_provider: Provider | None = None,
    ai_budgets: Budgets | None = None,
) -> Worker:
    audit = AuditActivities(pool)
    # No provider given: the offline one (ruff, Hypothesis), as with no ANTHROPIC_API_KEY;
    # no budgets given: the defaults of the settings.
    ai = AIActivities(
        pool,
        files,
        ai_provider or build_provider(AISettings()),
        broker,
        client,
        ai_budgets or budgets_of(AISettings()),
    )
    control = ContainerControlActivities(client)
    file_activities = FileActivities(pool, files, broker)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        workflow_runner=WORKFLOW_RUNNER,
        activities=[
            audit.record_audit_event,
            control.classify,
            control.notify_vanished,
            control.pool_claim,
            file_activities.import_workspace_changes,
            file_activities.refresh_project_stats,
            file_activities.publish_file_changes,
            file_activities.prune_versions,
            file_activities.collect_garbage,
            *ai.all(),
        ],
        activity_executor=executor,
        # A killed worker's cached workflows move to another worker within seconds, not 10.
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=2),
        graceful_shutdown_timeout=timedelta(seconds=5),
    )


def build_docker_worker(
    client: Client,
    docker_client: Any,
    data_dir: Path,
    docker_queue: str,
    executor: ThreadPoolExecutor,
    files: FileSystem | None = None,
) -> Worker:
    """The worker of one Docker host: only its Docker activities, on its own task queue."""
    from activities.docker_host import docker_host_activities

    return Worker(
        client,
        task_queue=docker_queue,
        activities=docker_host_activities(docker_client, data_dir, files),
        activity_executor=executor,
        max_concurrent_activities=executor._max_workers,
        graceful_shutdown_timeout=timedelta(seconds=5),
    )


def _docker_client(config: Config) -> Any | None:
    import docker
    import docker.errors

    try:
        found = (
            docker.DockerClient(base_url=config.containers.docker_url)
            if config.containers.docker_url
            else docker.from_env()
        )
        found.ping()
    except docker.errors.DockerException as exc:
        log.warning("no Docker engine: project containers are unavailable (%s)", exc)
        return None
    return found


async def run(config: Config, stop: asyncio.Event | None = None) -> None:
    client = await Client.connect(config.temporal_address, namespace=config.temporal_namespace)
    pool = await create_pool(config.database_url, min_size=1, max_size=config.db_pool_max)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Without Redis there is no way to reach the API process: announcements are skipped.
    broker = RedisBroker(config.redis_url, prefix=config.redis_prefix) if config.redis_url else None
    files = build_filesystem(config, pool)
    ai_provider = build_provider(config.ai)

    async def workspace_changed(project_id: str, paths: list[str] | None) -> None:
        await signal_files_changed(client, config.task_queue, project_id, paths, "workspace")

    try:
        with ThreadPoolExecutor(max_workers=16, thread_name_prefix="activity") as executor:
            worker = build_worker(
                client,
                pool,
                config.task_queue,
                executor,
                files=files,
                broker=broker,
                ai_provider=ai_provider,
                ai_budgets=budgets_of(config.ai),
            )
            docker_client = _docker_client(config)
            async with contextlib.AsyncExitStack() as stack:
                await stack.enter_async_context(worker)
                if docker_client is not None:
                    stack.callback(docker_client.close)
                    queue = config.containers.docker_queue
                    await stack.enter_async_context(
                        build_docker_worker(
                            client, docker_client, config.data_dir, queue, executor, files
                        )
                    )
                    await ensure_reconcile_schedule(
                        client,
                        config.task_queue,
                        queue,
                        timedelta(seconds=config.containers.reconcile_every_s),
                    )
                    settings = config.containers
                    await ensure_pools(
                        client,
                        config.task_queue,
                        queue,
                        configured_pools(
                            settings.default_image, settings.pool_size, settings.pool_images
                        ),
                        float(settings.health_timeout_s),
                    )
                await ensure_retention_schedule(client, config.task_queue)
                watcher = asyncio.create_task(
                    watch_workspaces(workspaces_root(config.data_dir), workspace_changed, stop)
                )
                relay = asyncio.create_task(OutboxRelay(pool, client, config.task_queue).run(stop))
                log.info("worker running", extra={"task_queue": config.task_queue})
                await stop.wait()
                await asyncio.gather(watcher, relay)
    finally:
        if broker is not None:
            await broker.close()
        await ai_provider.close()
        await pool.close()


async def ensure_retention_schedule(client: Client, task_queue: str) -> None:
    """Create the hourly retention schedule once; later starts find it and leave it."""
    with contextlib.suppress(ScheduleAlreadyRunningError):
        await client.create_schedule(
            RETENTION_SCHEDULE_ID,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    RetentionWorkflow.run,
                    RetentionInput(),
                    id=f"{RETENTION_SCHEDULE_ID}-run",
                    task_queue=task_queue,
                ),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=RETENTION_INTERVAL)]),
                policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            ),
        )
