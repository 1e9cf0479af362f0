"""The worker's metrics port: the Temporal SDK's workflow and activity outcomes and our own
metrics in one answer, for the metrics token only."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import worker as worker_module
from files.factory import build_filesystem
from store import db
from tests.conftest import free_port
from tests.support import wait_until
from tests.workflows.failing import FailingWorkflow, always_fails
from vaporform import metrics
from vaporform.config import Config
from vaporform.settings.telemetry import TelemetrySettings
from vaporform.worker_metrics import (
    TEMPORAL_FAMILIES,
    WorkerMetrics,
    free_loopback_address,
    temporal_runtime,
)
from workflows.projects.contract import ProjectCreatedInput
from workflows.projects.created import ProjectCreatedWorkflow

TOKEN = "worker-metrics-token-0123456789"


@dataclass
class Running:
    client: Client
    listener: WorkerMetrics
    task_queue: str

    @property
    def url(self) -> str:
        return f"http://{self.listener.host}:{self.listener.port}/metrics"


@pytest.fixture(scope="module")
async def running(config: Config, temporal_env: WorkflowEnvironment) -> AsyncIterator[Running]:
    """As `vaporform worker` runs with a metrics token: a client on a runtime that serves the
    SDK's metrics on loopback, our workers, and the listener."""
    temporal_metrics = free_loopback_address()
    client = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        namespace=temporal_env.client.namespace,
        runtime=temporal_runtime(temporal_metrics),
    )
    settings = TelemetrySettings(metrics_token=TOKEN, worker_metrics_port=free_port())
    listener = worker_module.metrics_listener(settings, temporal_metrics, None)
    assert listener is not None
    pool: asyncpg.Pool = await db.create_pool(config.database_url, min_size=1, max_size=3)
    metrics.track_pool("worker", pool)
    queue = f"{config.task_queue}-metrics-{uuid.uuid4().hex[:8]}"
    files = build_filesystem(config, pool)
    try:
        with ThreadPoolExecutor(max_workers=4) as executor:
            async with (
                worker_module.build_worker(client, pool, queue, executor, files=files),
                Worker(
                    client,
                    task_queue=queue + "-failing",
                    workflows=[FailingWorkflow],
                    activities=[always_fails],
                ),
                listener,
            ):
                yield Running(client, listener, queue)
    finally:
        metrics.untrack_pool(pool)
        await pool.close()


def families(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    return {
        family.name: [(s.name, s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    }


def total(text: str, sample: str, **labels: str) -> float:
    return sum(
        value
        for found in families(text).values()
        for name, have, value in found
        if name == sample and all(have.get(k) == v for k, v in labels.items())
    )


async def test_workflow_and_activity_outcomes_are_served(running: Running) -> None:
    project_id = str(uuid.uuid4())
    await running.client.execute_workflow(
        ProjectCreatedWorkflow.run,
        ProjectCreatedInput(project_id=project_id, owner_id=str(uuid.uuid4()), name="m"),
        id=f"metrics-created-{project_id}",
        task_queue=running.task_queue,
    )
    with pytest.raises(WorkflowFailureError):
        await running.client.execute_workflow(
            FailingWorkflow.run,
            "on purpose",
            id=f"metrics-failing-{uuid.uuid4().hex}",
            task_queue=running.task_queue + "-failing",
        )
    seen = ""

    async def counted() -> bool:
        nonlocal seen
        async with httpx.AsyncClient() as http:
            response = await http.get(running.url, headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == metrics.CONTENT_TYPE
        seen = response.text
        return (
            total(seen, "temporal_workflow_completed_total", workflow_type="ProjectCreated") >= 1
            and total(seen, "temporal_workflow_failed_total", workflow_type="TestFailing") >= 1
        )

    await wait_until(counted, what="the SDK to count both workflows")
    assert total(seen, "temporal_activity_execution_failed_total") >= 1
    assert (
        total(
            seen,
            "temporal_activity_execution_latency_count",
            activity_type="record_audit_event",
        )
        >= 1
    )
    # Every SDK family the alerts and the dashboard use is one the SDK really serves.
    assert set(TEMPORAL_FAMILIES) <= set(families(seen)), set(TEMPORAL_FAMILIES) - set(
        families(seen)
    )
    # And ours, from the same answer: the worker's pool.
    assert total(seen, "vaporform_db_pool_max_connections", pool="worker") >= 3


async def test_the_metrics_port_refuses_the_public(running: Running) -> None:
    async with httpx.AsyncClient() as http:
        assert (await http.get(running.url)).status_code == 401
        wrong = await http.get(running.url, headers={"Authorization": f"Bearer {TOKEN}!"})
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"].startswith("Bearer")
        assert "temporal_" not in wrong.text
        other = running.url.replace("/metrics", "/")
        assert (
            await http.get(other, headers={"Authorization": f"Bearer {TOKEN}"})
        ).status_code == 404
        posted = await http.post(running.url, headers={"Authorization": f"Bearer {TOKEN}"})
        assert posted.status_code == 405


def test_no_listener_without_a_token_or_a_port() -> None:
    assert worker_module.metrics_listener(TelemetrySettings(), "127.0.0.1:1", None) is None
    off = TelemetrySettings(metrics_token=TOKEN, worker_metrics_port=0)
    assert worker_module.metrics_listener(off, "127.0.0.1:1", None) is None
