"""The AI jobs reach a project's container through the client the API uses
(vaporform/container_client.py): they take the container that runs as it is, whatever its
resources, network and ports, and get the API's image check. Real API, Temporal and Docker;
the AI activity runs on the session's worker."""

from __future__ import annotations

import docker
import httpx
from temporalio.client import Client

from tests.containers.ai_ensure import ensure_the_ai_way
from tests.support import create_project, register
from vaporform.config import Config

CUSTOM = {
    "resources": {"cpus": 0.5, "memory_mb": 64, "pids": 64},
    "ports": [8080],
    "network": "bridge",
}


async def test_an_ai_job_reuses_a_custom_container_as_it_runs(
    http: httpx.AsyncClient,
    temporal_client: Client,
    container_config: Config,
    docker_client: docker.DockerClient,
) -> None:
    owner = await register(http, "owner")
    pid = (await create_project(http, owner))["id"]
    base = f"/api/v1/projects/{pid}/container"
    started = (await http.post(base, json=CUSTOM, headers=owner.headers)).json()
    assert started["status"] == "running", started
    try:
        found = await ensure_the_ai_way(temporal_client, container_config, pid, owner.id)
        assert found.running, found
        assert found.container_id == started["container_id"]
        assert found.docker_queue == container_config.containers.docker_queue

        after = (await http.get(base, headers=owner.headers)).json()
        for key in ("container_id", "resources", "ports", "network", "started_at", "image"):
            assert after[key] == started[key], key
        assert after["resources"] == CUSTOM["resources"]
        container = docker_client.containers.get(started["container_id"])
        assert container.status == "running"
        assert container.attrs["HostConfig"]["Memory"] == 64 * 1024 * 1024
        assert container.attrs["HostConfig"]["NetworkMode"] == "bridge"
    finally:
        await http.post(f"{base}/stop", headers=owner.headers)


async def test_an_ai_job_starts_the_default_container_when_none_runs(
    http: httpx.AsyncClient, temporal_client: Client, container_config: Config
) -> None:
    owner = await register(http, "owner")
    pid = (await create_project(http, owner))["id"]
    base = f"/api/v1/projects/{pid}/container"
    try:
        found = await ensure_the_ai_way(temporal_client, container_config, pid, owner.id)
        assert found.running, found
        status = (await http.get(base, headers=owner.headers)).json()
        assert status["container_id"] == found.container_id
        assert status["image"] == container_config.containers.default_image
        assert status["resources"] == {"cpus": 1.0, "memory_mb": 512, "pids": 256}
        assert status["network"] == "none"
    finally:
        await http.post(f"{base}/stop", headers=owner.headers)


async def test_an_ai_job_gets_the_image_check(
    http: httpx.AsyncClient, temporal_client: Client, container_config: Config
) -> None:
    owner = await register(http, "owner")
    pid = (await create_project(http, owner))["id"]
    found = await ensure_the_ai_way(
        temporal_client, container_config, pid, owner.id, image="alpine:latest"
    )
    assert not found.running
    assert found.error == "image must be one of the runtime images (GET /api/v1/images)"
    # Refused before any workflow was started.
    status = (await http.get(f"/api/v1/projects/{pid}/container", headers=owner.headers)).json()
    assert status["status"] == "stopped"
