"""The Temporal worker: builds every client, registers workflows and activities, runs."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import pkgutil
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.client import (
    Client,
)
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import workflows
from activities.ai.factory import build_provider
from activities.ai.jobs import AIActivities
from activities.ai.provider import Provider
from activities.audit import AuditActivities
from activities.containers import ContainerControlActivities
from activities.files import FileActivities
from activities.project_deletion import ProjectDeletionActivities
from agent.workspaces import container_changes
from collab.broker import Broker, RedisBroker
from files.factory import build_filesystem
from files.service import FileSystem
from store.ai_budget import Budgets
from store.db import create_pool
from vaporform import metrics
from vaporform.config import Config
from vaporform.outbox_relay import OutboxRelay
from vaporform.settings.ai import AISettings
from vaporform.settings.telemetry import TelemetrySettings
from vaporform.temporal_setup import (
    configured_pools,
    ensure_pools,
    ensure_reconcile_schedule,
    ensure_retention_schedule,
)
from vaporform.tracing import Tracing
from vaporform.worker_metrics import WorkerMetrics, free_loopback_address, temporal_runtime
from workflows.ai.debug import DebugWorkflow
from workflows.ai.generate import CodeGenerationWorkflow
from workflows.ai.review import CodeReviewWorkflow
from workflows.ai.tests import TestGenerationWorkflow
from workflows.containers.entity import ContainerWorkflow
from workflows.containers.ops import ExecWorkflow, ListImagesWorkflow
from workflows.containers.pool import ContainerPoolWorkflow
from workflows.containers.reconcile import ReconcileWorkflow
from workflows.files.versioning import RetentionWorkflow, VersioningWorkflow
from workflows.projects.created import ProjectCreatedWorkflow
from workflows.projects.deletion import ProjectDeletionWorkflow

log = logging.getLogger("vaporform.worker")

# The modules of each workflow domain that hold only dataclasses, constants and pure functions:
# `workflows/shared.py` and `workflows/<domain>/{contract,names,errors,findings}.py`.
PURE_MODULES = frozenset({"contract", "names", "errors", "findings"})


def passthrough_modules() -> list[str]:
    found = ["workflows.shared"]
    for module in pkgutil.walk_packages(workflows.__path__, "workflows."):
        if module.name.rpartition(".")[2] in PURE_MODULES:
            found.append(module.name)
    return found


# The sandbox re-imports workflow modules for every new workflow instance; the pure modules
# are safe to pass through, and doing so takes ~60 ms off every workflow's first task
# (measured on ContainerWorkflow: 75 ms -> 17 ms).
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(*passthrough_modules())
)

WORKFLOWS = [
    ProjectCreatedWorkflow,
    ProjectDeletionWorkflow,
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


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a Worker validates its workflows in the sandbox.

    Before Python 3.12 a module's import lock is not re-entrant (CPython issue 91351), and the
    sandbox imports through `importlib.__import__`, which takes it even for loaded modules: a
    finalizer run by the collector in the middle (a coroutine never awaited warns, which imports
    `warnings`) fails the construction with `KeyError: <thread id>` (temporalio/sdk-python#585).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def sandboxed_worker(client: Client, **options: Any) -> Worker:
    """A Worker of workflows: the runner above, and no collection while it validates them."""
    options.setdefault("workflow_runner", WORKFLOW_RUNNER)
    with collector_paused():
        return Worker(client, **options)


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
    deletion = ProjectDeletionActivities(pool, client, files.data_dir, broker)
    return sandboxed_worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[
            audit.record_audit_event,
            control.classify,
            control.notify_vanished,
            control.pool_claim,
            file_activities.import_workspace_changes,
            file_activities.project_is_live,
            file_activities.refresh_project_stats,
            file_activities.publish_file_changes,
            file_activities.prune_versions,
            file_activities.collect_garbage,
            *ai.all(),
            *deletion.all(),
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
    from activities.docker.host import docker_host_activities

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


def metrics_listener(
    settings: TelemetrySettings, temporal_metrics: str | None, docker_client: Any | None
) -> WorkerMetrics | None:
    """The worker's `/metrics` (vaporform/worker_metrics.py); None without a metrics token or
    with port 0. `temporal_metrics`: where the Temporal runtime serves the SDK's metrics."""
    if not settings.metrics_token or not settings.worker_metrics_port:
        return None
    census: list[Callable[[], None]] = []
    if docker_client is not None:
        from activities.docker.engine import container_census

        census.append(lambda: container_census(docker_client))
    return WorkerMetrics(
        settings.worker_metrics_host,
        settings.worker_metrics_port,
        settings.metrics_token,
        temporal_url=f"http://{temporal_metrics}/metrics" if temporal_metrics else None,
        before_scrape=census,
    )


async def run(config: Config, stop: asyncio.Event | None = None) -> None:
    telemetry = config.telemetry
    tracing = Tracing("vaporform-worker", telemetry.otlp_traces_endpoint)
    # The SDK's own metrics, on a loopback port that only our listener reads.
    serves_metrics = bool(telemetry.metrics_token and telemetry.worker_metrics_port)
    temporal_metrics = free_loopback_address() if serves_metrics else None
    client = await Client.connect(
        config.temporal_address,
        namespace=config.temporal_namespace,
        interceptors=tracing.interceptors(),
        runtime=temporal_runtime(temporal_metrics) if temporal_metrics else None,
    )
    pool = await create_pool(config.database_url, min_size=1, max_size=config.db_pool_max)
    metrics.track_pool("worker", pool)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Without Redis there is no way to reach the API process: announcements are skipped.
    broker = RedisBroker(config.redis_url, prefix=config.redis_prefix) if config.redis_url else None
    # What the workspace mirror of this host imports goes to the versioning workflows; the
    # worker writes no files of its own.
    files = build_filesystem(config, pool, notifier=container_changes(client, config.task_queue))
    ai_provider = build_provider(config.ai)

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
                listener = metrics_listener(telemetry, temporal_metrics, docker_client)
                if listener is not None:
                    await stack.enter_async_context(listener)
                if docker_client is not None:
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
                tasks: list[asyncio.Task[None]] = []
                if docker_client is not None and config.agent.in_worker:
                    # This host's agent (terminals, previews, its workspaces and their watcher)
                    # in the same process, on the worker's pool and blob store; run it alone
                    # with `vaporform agent` and VAPORFORM_AGENT_IN_WORKER=false.
                    from agent.serve import serve_agent

                    agent = serve_agent(config, docker_client, stop, files=files, temporal=client)
                    tasks.append(asyncio.create_task(agent))
                relay = asyncio.create_task(
                    OutboxRelay(pool, client, config.task_queue, tracer=tracing.tracer).run(stop)
                )
                log.info("worker running", extra={"task_queue": config.task_queue})
                await stop.wait()
                await asyncio.gather(relay, *tasks)
    finally:
        if broker is not None:
            await broker.close()
        await ai_provider.close()
        metrics.untrack_pool(pool)
        await pool.close()
        await asyncio.to_thread(tracing.shutdown)
