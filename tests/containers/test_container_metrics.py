"""Container metrics on the worker's metrics port: start latency (cold), exec latency and the
census of containers by state, after a start and an exec through the API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import docker
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

import worker as worker_module
from files.factory import build_filesystem
from store import db
from tests.conftest import Server, api_client, free_port, serving
from tests.support import create_project, register, wait_until
from vaporform import metrics
from vaporform.config import Config
from vaporform.settings.telemetry import TelemetrySettings
from vaporform.worker_metrics import free_loopback_address, temporal_runtime

TOKEN = "container-metrics-token-0123456789"


@dataclass
class Metered:
    server: Server
    metrics_url: str


@pytest.fixture(scope="module")
async def metered(
    container_config: Config, temporal_env: WorkflowEnvironment, docker_client: docker.DockerClient
) -> AsyncIterator[Metered]:
    """A worker of this module's own (queues, SDK runtime, metrics listener) and an API."""
    tag = uuid.uuid4().hex[:8]
    cfg = replace(
        container_config,
        task_queue=f"{container_config.task_queue}-cm-{tag}",
        containers=replace(
            container_config.containers,
            docker_queue=f"{container_config.containers.docker_queue}-cm-{tag}",
        ),
        telemetry=TelemetrySettings(metrics_token=TOKEN, worker_metrics_port=free_port()),
    )
    temporal_metrics = free_loopback_address()
    client = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        namespace=temporal_env.client.namespace,
        runtime=temporal_runtime(temporal_metrics),
    )
    listener = worker_module.metrics_listener(cfg.telemetry, temporal_metrics, docker_client)
    assert listener is not None
    pool = await db.create_pool(cfg.database_url, min_size=1, max_size=4)
    files = build_filesystem(cfg, pool)
    try:
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="cm") as executor:
            async with (
                worker_module.build_worker(client, pool, cfg.task_queue, executor, files=files),
                worker_module.build_docker_worker(
                    client,
                    docker_client,
                    cfg.data_dir,
                    cfg.containers.docker_queue,
                    executor,
                    files,
                ),
                listener,
                serving(cfg) as server,
            ):
                yield Metered(server, f"http://127.0.0.1:{listener.port}/metrics")
    finally:
        await pool.close()


def total(text: str, sample: str, **labels: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def test_start_exec_and_census_are_measured(metered: Metered) -> None:
    async with api_client(metered.server, timeout=60) as api:
        owner = await register(api, "metered")
        pid = (await create_project(api, owner))["id"]
        base = f"/api/v1/projects/{pid}/container"
        small = {"cpus": 0.5, "memory_mb": 64, "pids": 64}
        started = await api.post(base, json={"resources": small}, headers=owner.headers)
        assert started.status_code == 202, started.text
        assert started.json()["status"] == "running"
        ran = await api.post(
            base + "/exec", json={"command": ["echo", "hi"]}, headers=owner.headers
        )
        assert ran.status_code == 200, ran.text
        seen = ""

        async def scraped() -> bool:
            nonlocal seen
            async with httpx.AsyncClient() as http:
                response = await http.get(
                    metered.metrics_url, headers={"Authorization": f"Bearer {TOKEN}"}
                )
            assert response.status_code == 200, response.text
            seen = response.text
            return total(seen, f"{metrics.CONTAINER_START}_count", path="cold") >= 1

        await wait_until(scraped, timeout=20, what="the start latency to be served")
        start = f"{metrics.CONTAINER_START}_count"
        assert total(seen, start, path="cold", outcome="running") >= 1
        assert total(seen, f"{metrics.CONTAINER_START}_bucket", path="cold", le="10") >= 1
        exec_count = "vaporform_container_exec_duration_seconds_count"
        assert total(seen, exec_count, outcome="exited") >= 1
        assert total(seen, "vaporform_containers", state="running", role="project") >= 1

        stopped = await api.post(base + "/stop", headers=owner.headers)
        assert stopped.status_code == 202, stopped.text
