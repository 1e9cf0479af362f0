"""docker-compose.yml, as `docker-compose config` resolves it: who holds the Docker socket, where
workspaces live, what runs before the worker, and S3 as the blob store. Then the bucket
one-shot (deploy/seaweedfs/create-bucket.sh) against a real SeaweedFS with the credentials the
compose file gives it.

The stack itself needs Docker Hub's images; what of it runs here is tested where it lives: the
API and the preview origin with no Docker engine (tests/containers/test_no_docker.py), the
agent (tests/containers/test_agent.py), S3 (tests/store/test_blob_stores.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml  # type: ignore[import-untyped]
from obstore.exceptions import PermissionDeniedError

from activities.docker.pool import slot_dir
from files.workspace import workspace_dir
from store.s3_blobs import S3BlobStore
from tests.seaweed import weed_binary, weed_server
from vaporform.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SOCKET = "/var/run/docker.sock"
DEFAULT_HOST_DATA = "/var/lib/vaporform"
SECRETS = {"VAPORFORM_JWT_SECRET": "j" * 40, "VAPORFORM_S3_SECRET_ACCESS_KEY": "s" * 32}
# The services that reach the Docker engine; nothing else may.
WITH_SOCKET = {"agent", "worker", "images"}
# On the host's network: every other service is reached on the host's loopback.
ON_HOST_NETWORK = {"agent"}


# Variables the compose file reads: the caller's own must not change what is checked.
READ = ("VAPORFORM_", "POSTGRES_", "REDIS_", "SEAWEEDFS_", "TEMPORAL_", "DOCKER_GID")


def resolved(**env: str) -> dict[str, Any]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(READ)}
    done = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
        check=True,
        capture_output=True,
        text=True,
        env={**environ, **SECRETS, **env},
    )
    document: dict[str, Any] = yaml.safe_load(done.stdout)
    return document


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    found: dict[str, Any] = resolved()["services"]
    return found


def mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume, in either the short or the long syntax."""
    found = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            found.append((str(volume.get("source", "")), str(volume["target"])))
        else:
            source, target = volume.split(":")[:2]
            found.append((source, target))
    return found


def published(service: dict[str, Any]) -> dict[int, tuple[str, int]]:
    """container port -> (host ip, host port)."""
    found = {}
    for port in service.get("ports", []):
        if isinstance(port, dict):
            found[int(port["target"])] = (port["host_ip"], int(port["published"]))
        else:
            host_ip, host_port, target = port.split("/")[0].split(":")
            found[int(target)] = (host_ip, int(host_port))
    return found


def needs(service: dict[str, Any], other: str) -> str | None:
    depends = service.get("depends_on", {})
    if isinstance(depends, list):
        return "service_started" if other in depends else None
    condition: str | None = depends.get(other, {}).get("condition")
    return condition


def test_only_the_agent_the_worker_and_the_image_builder_have_the_socket(
    services: dict[str, Any],
) -> None:
    holders = {
        name for name, service in services.items() if SOCKET in (t for _, t in mounts(service))
    }
    assert holders == WITH_SOCKET
    for name in set(services) - WITH_SOCKET:
        environment = services[name].get("environment", {})
        assert "DOCKER_HOST" not in environment, name
        assert not services[name].get("group_add"), name


def test_the_api_has_neither_the_socket_nor_workspaces(services: dict[str, Any]) -> None:
    for name in ("api", "previews"):
        service = services[name]
        assert all(SOCKET not in pair for pair in mounts(service)), name
        data_dir = service["environment"]["VAPORFORM_DATA_DIR"]
        assert data_dir == "/data", name
        assert all(not source.startswith("/") for source, _ in mounts(service)), name
        # Terminals and previews reach the agent.
        assert service["environment"]["VAPORFORM_AGENT_URLS"].endswith(":8002"), name
        assert service["extra_hosts"] == ["host.docker.internal:host-gateway"], name


@pytest.mark.parametrize("host_data", [DEFAULT_HOST_DATA, "/srv/vaporform-elsewhere"])
def test_workspaces_are_a_host_path_the_same_inside_and_out(host_data: str) -> None:
    env = {} if host_data == DEFAULT_HOST_DATA else {"VAPORFORM_HOST_DATA_DIR": host_data}
    services = resolved(**env)["services"]
    pid = uuid.uuid4()
    for name in ("worker", "agent"):
        service = services[name]
        data_dir = Path(service["environment"]["VAPORFORM_DATA_DIR"])
        assert str(data_dir) == host_data, name
        assert (host_data, host_data) in mounts(service), name
        # What the worker hands the engine as bind sources lies below that mount.
        for source in (workspace_dir(data_dir, pid), slot_dir(data_dir, "slot-1")):
            assert source.is_relative_to(host_data), (name, source)
    # Handed to uid 1000 (the services' user) before either starts.
    owner = services["host-data"]
    assert owner["user"] in ("0:0", "0")
    assert owner["command"] == ["chown", "1000:1000", host_data]
    assert (host_data, host_data) in mounts(owner)
    for name in ("worker", "agent"):
        assert needs(services[name], "host-data") == "service_completed_successfully", name


def test_the_runtime_images_are_built_before_the_worker_starts(services: dict[str, Any]) -> None:
    images = services["images"]
    assert images["command"] == ["vaporform", "images", "build"]
    assert images["restart"] == "no"
    assert images["user"] in ("0:0", "0")  # debootstrap chroots and makes device nodes
    assert images["build"]["target"] == "images"
    assert needs(services["worker"], "images") == "service_completed_successfully"
    dockerfile = (ROOT / "Dockerfile").read_text()
    stage = dockerfile.split(" AS images\n", 1)[1].split("\nFROM ", 1)[0]
    assert "debootstrap" in stage
    assert "busybox-static" in stage
    # The default target (the last stage) is the unprivileged one the services run.
    last = dockerfile.rsplit("\nFROM ", 1)[1]
    assert last.startswith("${PYTHON_IMAGE} AS runtime")
    assert "USER 1000:1000" in last


def test_blobs_are_in_seaweedfs(services: dict[str, Any]) -> None:
    seaweed = services["seaweedfs"]
    assert seaweed["command"][:2] == ["server", "-s3"]
    assert seaweed["image"].startswith("chrislusf/seaweedfs:")
    key_id = seaweed["environment"]["AWS_ACCESS_KEY_ID"]
    secret = seaweed["environment"]["AWS_SECRET_ACCESS_KEY"]
    assert secret == SECRETS["VAPORFORM_S3_SECRET_ACCESS_KEY"]
    bucket = services["s3-bucket"]
    assert needs(bucket, "seaweedfs") == "service_healthy"
    assert (str(ROOT / "deploy/seaweedfs/create-bucket.sh"), "/usr/local/bin/create-bucket.sh") in (
        mounts(bucket)
    )
    for name in ("api", "worker", "agent", "migrate", "previews"):
        settings = load_config(services[name]["environment"]).blob_store
        assert settings.kind == "s3", name
        assert (settings.s3_access_key_id, settings.s3_secret_access_key) == (key_id, secret)
        assert settings.s3_bucket == bucket["environment"]["VAPORFORM_S3_BUCKET"], name
        assert settings.s3_endpoint is not None
        endpoint = urlsplit(settings.s3_endpoint)
        if name in ON_HOST_NETWORK:
            assert (endpoint.hostname, endpoint.port) == ("127.0.0.1", published(seaweed)[8333][1])
        else:
            assert (endpoint.hostname, endpoint.port) == ("seaweedfs", 8333), name
    for name in ("api", "worker", "agent"):
        assert needs(services[name], "s3-bucket") == "service_completed_successfully", name


def test_the_agent_reaches_every_store_on_the_hosts_loopback(services: dict[str, Any]) -> None:
    agent = services["agent"]
    assert agent["network_mode"] == "host"
    config = load_config(agent["environment"])
    database = urlsplit(config.database_url)
    redis = urlsplit(config.redis_url or "")
    temporal_host, _, temporal_port = config.temporal_address.rpartition(":")
    for host, port, service, target in (
        (database.hostname, database.port, "postgres", 5432),
        (redis.hostname, redis.port, "redis", 6379),
        (temporal_host, int(temporal_port), "temporal", 7233),
    ):
        assert host == "127.0.0.1", service
        assert published(services[service])[target] == ("127.0.0.1", port), service
    for service in ("postgres", "redis"):
        assert needs(agent, service) == "service_healthy", service


def test_every_published_port_is_on_loopback(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for host_ip, _ in published(service).values():
            assert host_ip == "127.0.0.1", name


# -- the bucket one-shot, against a real SeaweedFS ---------------------------------------------


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """`weed server -s3` with the compose file's admin identity: (S3 endpoint, master address
    as `weed shell` takes it, host:port.grpc_port)."""
    identity = {
        "AWS_ACCESS_KEY_ID": "vaporform",
        "AWS_SECRET_ACCESS_KEY": SECRETS["VAPORFORM_S3_SECRET_ACCESS_KEY"],
    }
    with weed_server(tmp_path_factory.mktemp("seaweedfs-compose"), env=identity) as server:
        yield server.endpoint, server.master


async def test_the_bucket_one_shot_makes_the_bucket_and_can_run_again(
    seaweedfs: tuple[str, str],
) -> None:
    endpoint, master = seaweedfs
    bucket = f"vf-compose-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "SEAWEEDFS_MASTER": master,
        "VAPORFORM_S3_BUCKET": bucket,
        "WEED": str(weed_binary()),
        "TIMEOUT_SECONDS": "60",
    }
    script = str(ROOT / "deploy" / "seaweedfs" / "create-bucket.sh")
    for _ in range(2):  # on every `up`
        done = await asyncio.to_thread(
            subprocess.run, ["sh", script], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"bucket {bucket} is on" in done.stdout

    def store(secret: str) -> S3BlobStore:
        return S3BlobStore(
            bucket, endpoint=endpoint, access_key_id="vaporform", secret_access_key=secret
        )

    good = store(SECRETS["VAPORFORM_S3_SECRET_ACCESS_KEY"])
    # Listing works before the first write (garbage collection may come first).
    assert [digest async for digest in good.digests()] == []
    digest = await good.put(b"print('hello')\n")
    assert await good.get(digest) == b"print('hello')\n"
    with pytest.raises(PermissionDeniedError):
        await store("not-the-secret-at-all").get(digest)
