"""Containers are hostile: what `docker inspect` shows and what a process inside can do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import docker
import httpx
import pytest

from tests.conftest import Server, api_client
from tests.support import Account, create_project, register, wait_until

LIMITS = {"cpus": 0.5, "memory_mb": 64, "pids": 64}


class Running:
    def __init__(self, http: httpx.AsyncClient, owner: Account, pid: str, body: dict[str, Any]):
        self.http, self.owner, self.pid, self.body = http, owner, pid, body
        self.base = f"/api/v1/projects/{pid}/container"

    async def run(self, *command: str, timeout_s: float = 30) -> dict[str, Any]:
        response = await self.http.post(
            f"{self.base}/exec",
            json={"command": list(command), "timeout_s": timeout_s},
            headers=self.owner.headers,
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture(scope="module")
async def running(container_server: Server) -> AsyncIterator[Running]:
    async with api_client(container_server, timeout=60) as http:
        owner = await register(http, "hardened")
        pid = (await create_project(http, owner))["id"]
        started = await http.post(
            f"/api/v1/projects/{pid}/container", json={"resources": LIMITS}, headers=owner.headers
        )
        assert started.json()["status"] == "running", started.text
        yield Running(http, owner, pid, started.json())
        await http.post(f"/api/v1/projects/{pid}/container/stop", headers=owner.headers)


@pytest.fixture(autouse=True)
def remove_leftover_containers() -> None:
    """The module's one container is stopped by its fixture, not after each test."""


async def test_inspect_shows_every_hardened_setting(
    running: Running, docker_client: docker.DockerClient
) -> None:
    attrs = docker_client.containers.get(running.body["container_id"]).attrs
    host, config = attrs["HostConfig"], attrs["Config"]
    assert config["User"] == "1000:1000"
    assert host["CapDrop"] == ["ALL"]
    assert not host["CapAdd"]
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["ReadonlyRootfs"] is True
    assert host["Tmpfs"] == {"/tmp": "rw,nosuid,nodev,size=64m,uid=1000,gid=1000"}
    assert host["Memory"] == 64 * 1024 * 1024
    assert host["MemorySwap"] == 64 * 1024 * 1024  # no swap beyond the limit
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 64
    assert host["Init"] is True
    assert host["NetworkMode"] == "none"
    assert host["Privileged"] is False
    assert not host["PortBindings"]
    assert host["IpcMode"] == "private"
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}}
    mounts = attrs["Mounts"]
    assert [(m["Destination"], m["RW"]) for m in mounts] == [("/workspace", True)]
    assert mounts[0]["Source"].endswith(f"/workspaces/{running.pid}")
    assert not any("docker.sock" in m["Source"] for m in mounts)
    assert config["WorkingDir"] == "/workspace"


async def test_inside_no_capabilities_no_root_no_writes(running: Running) -> None:
    caps = await running.run("grep", "^Cap", "/proc/self/status")
    values = {line.split(":")[0]: line.split()[1] for line in caps["stdout"].splitlines()}
    assert values == {
        k: "0000000000000000" for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
    }
    nnp = await running.run("grep", "NoNewPrivs", "/proc/self/status")
    assert nnp["stdout"].split() == ["NoNewPrivs:", "1"]
    assert (await running.run("id", "-u"))["stdout"] == "1000\n"

    root = await running.run("touch", "/evil")
    assert root["exit_code"] != 0
    assert "Read-only file system" in root["stderr"]
    etc = await running.run("sh", "-c", "echo x >> /etc/passwd")
    assert etc["exit_code"] != 0
    tmp = await running.run("sh", "-c", "echo ok > /tmp/t && cat /tmp/t")
    assert tmp["stdout"] == "ok\n"
    assert (await running.run("ls", "/var/run/docker.sock"))["exit_code"] != 0


async def test_inside_no_network(running: Running) -> None:
    # Only the loopback interface, and no route anywhere: nothing can leave the container.
    interfaces = await running.run("ls", "/sys/class/net")
    assert interfaces["stdout"].split() == ["lo"]
    routes = await running.run("cat", "/proc/net/route")
    assert routes["stdout"].strip().splitlines()[1:] == []
    dns = await running.run("nslookup", "example.com", timeout_s=5)
    assert dns["exit_code"] != 0


async def test_fork_bomb_hits_the_pids_limit(running: Running, http: httpx.AsyncClient) -> None:
    bomb = "n=0; while [ $n -lt 500 ]; do sleep 2 & n=$((n+1)); done; wait"
    result = await running.run("sh", "-c", bomb, timeout_s=20)
    assert result["exit_code"] != 0
    assert "can't fork" in result["stderr"]
    assert (await http.get("/healthz")).status_code == 200

    async def recovered() -> bool:
        response = await running.http.post(
            f"{running.base}/exec", json={"command": ["echo", "ok"]}, headers=running.owner.headers
        )
        return response.status_code == 200 and response.json()["stdout"] == "ok\n"

    # The sleeps end by themselves; then the container is usable again.
    await wait_until(recovered, timeout=20, what="the container to recover from the bomb")


async def test_memory_hog_is_oom_killed(
    running: Running, http: httpx.AsyncClient, docker_client: docker.DockerClient
) -> None:
    hog = 'x=$(head -c 300000000 /dev/zero | tr "\\0" a); echo ${#x}'
    result = await running.run("sh", "-c", hog, timeout_s=30)
    assert result["exit_code"] == 137, result  # SIGKILL from the kernel's OOM killer
    assert result["stdout"] == ""
    assert (await http.get("/healthz")).status_code == 200
    container = docker_client.containers.get(running.body["container_id"])
    assert container.status == "running"  # only the hog died
    assert (await running.run("echo", "alive"))["stdout"] == "alive\n"
    status = await http.get(running.base, headers=running.owner.headers)
    assert status.json()["status"] == "running"
