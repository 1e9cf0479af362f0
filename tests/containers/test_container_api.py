"""The container routes of the contract, end to end: API -> Temporal -> Docker engine."""

from __future__ import annotations

import os
import uuid

import docker
import docker.errors
import httpx
import pytest

from tests.support import Account, assert_error, create_project, register
from vaporform.config import Config
from workflows.containers.names import (
    LABEL_CREATED_BY,
    LABEL_MANAGED,
    LABEL_PROJECT,
    LABEL_WORKFLOW,
    container_workflow_id,
)

SMALL = {"cpus": 0.5, "memory_mb": 64, "pids": 64}


async def _add_member(
    http: httpx.AsyncClient, owner: Account, pid: str, who: Account, role: str
) -> None:
    response = await http.post(
        f"/api/v1/projects/{pid}/members",
        json={"email": who.email, "role": role},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text


async def test_start_exec_stop_through_rest(
    http: httpx.AsyncClient, docker_client: docker.DockerClient, container_config: Config
) -> None:
    owner = await register(http, "owner")
    pid = (await create_project(http, owner))["id"]
    base = f"/api/v1/projects/{pid}/container"

    before = await http.get(base, headers=owner.headers)
    assert before.status_code == 200
    assert before.json()["status"] == "stopped"
    assert before.json()["container_id"] is None

    started = await http.post(base, json={"resources": SMALL}, headers=owner.headers)
    assert started.status_code == 202, started.text
    body = started.json()
    assert body["status"] == "running", body
    assert body["workflow_id"] == container_workflow_id(pid)
    assert body["image"] == "vaporform/runtime-busybox:latest"
    assert body["resources"] == SMALL
    assert body["idle_deadline"]
    assert body["started_at"]

    status = (await http.get(base, headers=owner.headers)).json()
    assert status["status"] == "running"
    container = docker_client.containers.get(status["container_id"])
    assert container.status == "running"
    assert container.labels[LABEL_MANAGED] == "true"
    assert container.labels[LABEL_PROJECT] == pid
    assert container.labels[LABEL_WORKFLOW] == container_workflow_id(pid)
    assert container.labels[LABEL_CREATED_BY] == owner.id

    # Asking again while it runs answers at once with the same container.
    again = await http.post(base, json={"resources": SMALL}, headers=owner.headers)
    assert again.json()["container_id"] == status["container_id"]

    echoed = await http.post(
        f"{base}/exec", json={"command": ["echo", "hello", "world"]}, headers=owner.headers
    )
    assert echoed.status_code == 200, echoed.text
    result = echoed.json()
    assert result["exit_code"] == 0
    assert result["stdout"] == "hello world\n"
    assert result["stderr"] == ""
    assert result["truncated"] is False
    assert result["timed_out"] is False
    assert result["duration_ms"] >= 0

    # The workspace is the project's directory on the host, writable by the container's user.
    wrote = await http.post(
        f"{base}/exec",
        json={"command": ["sh", "-c", "echo made inside > /workspace/note.txt; pwd; id -u"]},
        headers=owner.headers,
    )
    assert wrote.json()["stdout"] == "/workspace\n1000\n"
    note = container_config.data_dir / "workspaces" / pid / "note.txt"
    assert note.read_text() == "made inside\n"
    assert os.stat(note).st_uid == 1000

    failing = await http.post(
        f"{base}/exec",
        json={"command": ["sh", "-c", "echo oops >&2; exit 3"]},
        headers=owner.headers,
    )
    assert failing.json()["exit_code"] == 3
    assert failing.json()["stderr"] == "oops\n"

    stopped = await http.post(f"{base}/stop", headers=owner.headers)
    assert stopped.status_code == 202
    assert stopped.json()["status"] == "stopped"
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(status["container_id"])
    after = (await http.get(base, headers=owner.headers)).json()
    assert after["status"] == "stopped"
    assert after["container_id"] is None

    not_running = await http.post(f"{base}/exec", json={"command": ["true"]}, headers=owner.headers)
    assert_error(not_running, 409, "container_not_running")

    # And it starts again: a new container for the same project.
    restarted = await http.post(base, json={"resources": SMALL}, headers=owner.headers)
    assert restarted.json()["status"] == "running"
    assert restarted.json()["container_id"] != status["container_id"]
    await http.post(f"{base}/stop", headers=owner.headers)


async def test_exec_timeout_and_output_cap(http: httpx.AsyncClient) -> None:
    owner = await register(http, "owner")
    pid = (await create_project(http, owner))["id"]
    base = f"/api/v1/projects/{pid}/container"
    assert (await http.post(base, json={"resources": SMALL}, headers=owner.headers)).json()[
        "status"
    ] == "running"
    try:
        slow = await http.post(
            f"{base}/exec", json={"command": ["sleep", "30"], "timeout_s": 1}, headers=owner.headers
        )
        result = slow.json()
        # Killed at its deadline (SIGKILL: 137), not waited for; how soon after the deadline
        # the answer comes is bench/container_checks_bench.py's to measure.
        assert result["timed_out"] is True, result
        assert result["exit_code"] == 137
        left = await http.post(
            f"{base}/exec",
            json={"command": ["sh", "-c", "ps -o args | grep -c '^sleep 30$' || true"]},
            headers=owner.headers,
        )
        assert left.json()["stdout"] == "0\n", left.json()  # nothing of it keeps running

        # 1 MiB of output against a 256 KiB cap: cut, flagged, and the command still completes.
        big = await http.post(
            f"{base}/exec",
            json={"command": ["sh", "-c", "head -c 1048576 /dev/zero | tr '\\0' x; echo done >&2"]},
            headers=owner.headers,
        )
        result = big.json()
        assert result["exit_code"] == 0
        assert result["truncated"] is True
        assert len(result["stdout"]) <= 256 * 1024

        too_long = await http.post(
            f"{base}/exec", json={"command": ["true"], "timeout_s": 10_000}, headers=owner.headers
        )
        assert_error(too_long, 400, "quota_exceeded")
        empty = await http.post(f"{base}/exec", json={"command": []}, headers=owner.headers)
        assert_error(empty, 400, "validation_error")
    finally:
        await http.post(f"{base}/stop", headers=owner.headers)


async def test_roles_and_visibility(http: httpx.AsyncClient) -> None:
    owner, viewer = await register(http, "owner"), await register(http, "viewer")
    editor, stranger = await register(http, "editor"), await register(http, "stranger")
    pid = (await create_project(http, owner))["id"]
    await _add_member(http, owner, pid, viewer, "viewer")
    await _add_member(http, owner, pid, editor, "editor")
    base = f"/api/v1/projects/{pid}/container"

    writes = [
        ("POST", base, {"resources": SMALL}),
        ("POST", f"{base}/stop", None),
        ("POST", f"{base}/restart", None),
        ("POST", f"{base}/touch", None),
        ("POST", f"{base}/exec", {"command": ["id"]}),
    ]
    for method, path, payload in writes:
        response = await http.request(method, path, json=payload, headers=viewer.headers)
        assert_error(response, 403, "forbidden")
    assert (await http.get(base, headers=viewer.headers)).status_code == 200

    for method, path, payload in [("GET", base, None), *writes]:
        response = await http.request(method, path, json=payload, headers=stranger.headers)
        assert_error(response, 404, "not_found")
    missing = await http.get(f"/api/v1/projects/{uuid.uuid4()}/container", headers=owner.headers)
    assert_error(missing, 404, "not_found")
    assert_error(await http.get(base), 401, "unauthorized")

    # Editors may run things.
    started = await http.post(base, json={"resources": SMALL}, headers=editor.headers)
    assert started.json()["status"] == "running"
    try:
        ran = await http.post(
            f"{base}/exec", json={"command": ["id", "-u"]}, headers=editor.headers
        )
        assert ran.json()["stdout"] == "1000\n"
        forbidden = await http.post(
            f"{base}/exec", json={"command": ["id"]}, headers=viewer.headers
        )
        assert_error(forbidden, 403, "forbidden")
    finally:
        await http.post(f"{base}/stop", headers=editor.headers)


async def test_requests_are_validated_against_quotas(http: httpx.AsyncClient) -> None:
    owner = await register(http, "owner")
    pid = (await create_project(http, owner))["id"]
    base = f"/api/v1/projects/{pid}/container"
    cases = [
        ({"resources": {"memory_mb": 4096}}, "memory_mb"),
        ({"resources": {"cpus": 3.0}}, "cpus"),
        ({"resources": {"pids": 100_000}}, "pids"),
        ({"ports": [3000, 3001, 3002, 3003, 3004], "network": "bridge"}, "ports"),
    ]
    for payload, limit in cases:
        error = assert_error(
            await http.post(base, json=payload, headers=owner.headers), 400, "quota_exceeded"
        )
        assert error["details"]["limit"] == limit, error
        assert error["details"]["requested"] > error["details"]["maximum"]
    bad = [
        ({"image": "alpine:latest"}, "invalid_image"),
        ({"image": "vaporform/runtime-../x"}, "invalid_image"),
        ({"ports": [3000]}, "ports_need_network"),
        ({"ports": [0], "network": "bridge"}, "invalid_ports"),
        ({"network": "host"}, "validation_error"),
        ({"privileged": True}, "validation_error"),
        ({"resources": {"memory_mb": "lots"}}, "validation_error"),
    ]
    for payload, code in bad:
        assert_error(await http.post(base, json=payload, headers=owner.headers), 400, code)
    # Nothing was started by any of them.
    assert (await http.get(base, headers=owner.headers)).json()["status"] == "stopped"


async def test_a_missing_image_fails_with_the_reason(http: httpx.AsyncClient) -> None:
    owner = await register(http, "owner")
    pid = (await create_project(http, owner))["id"]
    base = f"/api/v1/projects/{pid}/container"
    answer = await http.post(
        base, json={"image": "vaporform/runtime-nothing:here"}, headers=owner.headers
    )
    assert answer.status_code == 202
    assert answer.json()["status"] == "failed"
    assert "vaporform/runtime-nothing:here" in answer.json()["error"]
    status = (await http.get(base, headers=owner.headers)).json()
    assert status["status"] == "failed"
    assert status["error"] == answer.json()["error"]


async def test_published_ports_are_on_loopback_only(
    http: httpx.AsyncClient, docker_client: docker.DockerClient
) -> None:
    owner = await register(http, "owner")
    pid = (await create_project(http, owner))["id"]
    base = f"/api/v1/projects/{pid}/container"
    started = await http.post(
        base, json={"ports": [8080], "network": "bridge"}, headers=owner.headers
    )
    body = started.json()
    assert body["status"] == "running", body
    try:
        host_port = body["ports"]["8080"]
        container = docker_client.containers.get(body["container_id"])
        bindings = container.attrs["HostConfig"]["PortBindings"]
        assert bindings == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
        published = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"]
        assert {b["HostIp"] for b in published} == {"127.0.0.1"}
        # A server in the container answers on 127.0.0.1:<published port> of the host.
        serve = (
            "mkdir -p /tmp/www && echo pong > /tmp/www/ping && "
            "httpd -p 8080 -h /tmp/www && echo started"
        )
        ran = await http.post(
            f"{base}/exec", json={"command": ["sh", "-c", serve]}, headers=owner.headers
        )
        assert ran.json()["stdout"] == "started\n", ran.json()

        async def answers() -> bool:
            try:
                async with httpx.AsyncClient() as client:
                    got = await client.get(f"http://127.0.0.1:{host_port}/ping")
                return got.text == "pong\n"
            except httpx.TransportError:
                return False

        from tests.support import wait_until

        await wait_until(answers, timeout=10, what="the container's server on 127.0.0.1")
    finally:
        await http.post(f"{base}/stop", headers=owner.headers)


async def test_images_are_listed(http: httpx.AsyncClient, runtime_image: str) -> None:
    user = await register(http)
    listed = await http.get("/api/v1/images", headers=user.headers)
    assert listed.status_code == 200, listed.text
    items = {i["name"]: i for i in listed.json()["items"]}
    assert runtime_image in items
    assert items[runtime_image]["size"] > 1_000_000
    assert "BusyBox" in items[runtime_image]["description"]
    assert all(name.startswith("vaporform/runtime-") for name in items)
    assert_error(await http.get("/api/v1/images"), 401, "unauthorized")
