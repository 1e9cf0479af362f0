"""The API and the preview origin with no Docker engine within their reach.

Both run as real processes (`vaporform api`, `vaporform previews`) with `DOCKER_HOST` pointing at
nothing; the worker and this host's agent (fixtures of this test process) hold the engine.
Terminals, exec and previews work through them. A preview's dev servers run in the project's
busybox container: `busybox httpd` for HTTP and, for WebSockets (the image has no Python),
`nc -ll -e tests/containers/previews/ws.sh`, a WebSocket echo written in busybox sh.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.conftest import free_port
from tests.containers.test_terminal import read_until
from tests.support import Account, create_project, register, stop_processes, wait_until
from vaporform.config import Config

ROOT = Path(__file__).resolve().parents[2]
WS_SCRIPT = (Path(__file__).parent / "previews" / "ws.sh").read_text()
NOWHERE = "unix:///nonexistent/docker.sock"


def test_web_never_imports_docker() -> None:
    probe = (
        "import sys, web.app, web.preview_origin, web.terminal, web.blueprints.previews\n"
        "assert 'docker' not in sys.modules, sorted(m for m in sys.modules if 'docker' in m)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()


@dataclass
class Stack:
    api: str
    previews_port: int
    config: Config


def _env(config: Config, api_port: int) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("VAPORFORM_")}
    env.update(
        {
            "DOCKER_HOST": NOWHERE,
            "DATABASE_URL": config.database_url,
            "REDIS_URL": config.redis_url or "",
            "VAPORFORM_REDIS_PREFIX": config.redis_prefix,
            "TEMPORAL_ADDRESS": config.temporal_address,
            "VAPORFORM_TASK_QUEUE": config.task_queue,
            "VAPORFORM_DATA_DIR": str(config.data_dir),
            "VAPORFORM_JWT_SECRET": config.jwt.secret,
            "VAPORFORM_API_HOST": "127.0.0.1",
            "VAPORFORM_API_PORT": str(api_port),
            "VAPORFORM_SERVER": "hypercorn",
            "VAPORFORM_DOCKER_QUEUE": config.containers.docker_queue,
            "VAPORFORM_CONTAINER_IMAGE": config.containers.default_image,
            "VAPORFORM_POOL_SIZE": "0",
            "VAPORFORM_AGENT_HOST": config.agent.host,
            "VAPORFORM_AGENT_PORT": str(config.agent.port),
            "VAPORFORM_PREVIEW_HOST": config.previews.host,
            "VAPORFORM_PREVIEW_PORT": str(config.previews.port),
            "VAPORFORM_PREVIEW_URL": config.previews.url,
            "VAPORFORM_ARGON2_TIME_COST": "1",
            "VAPORFORM_ARGON2_MEMORY_KIB": "8192",
            "VAPORFORM_LOGIN_PER_IP": "100000",
            "VAPORFORM_REGISTER_PER_IP": "100000",
            "VAPORFORM_LOG_LEVEL": "WARNING",
        }
    )
    return env


def _spawn(command: str, env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    with (logs / f"{command}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "vaporform.cli", command],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture(scope="module")
async def stack(
    container_config: Config,
    worker: None,
    docker_worker: None,
    agent: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    api_port = free_port()
    env = _env(container_config, api_port)
    logs = tmp_path_factory.mktemp("no-docker")
    children = [_spawn(command, env, logs) for command in ("api", "previews")]
    found = Stack(f"http://127.0.0.1:{api_port}", container_config.previews.port, container_config)

    async def answers(url: str, ok: int) -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(url)).status_code == ok
        except httpx.TransportError:
            return False

    try:
        await wait_until(
            lambda: answers(found.api + "/healthz", 200), timeout=30, what="the API process"
        )
        previews = f"http://127.0.0.1:{found.previews_port}/"
        await wait_until(lambda: answers(previews, 404), timeout=30, what="the preview origin")
        yield found
    finally:
        stop_processes(
            children, {command: logs / f"{command}.log" for command in ("api", "previews")}
        )


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.api, timeout=60) as client:
        yield client


async def start(
    http: httpx.AsyncClient, owner: Account, pid: str, **body: object
) -> dict[str, object]:
    started = await http.post(f"/api/v1/projects/{pid}/container", json=body, headers=owner.headers)
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "running", started.text
    found: dict[str, object] = started.json()
    return found


async def run(http: httpx.AsyncClient, owner: Account, pid: str, script: str) -> str:
    done = await http.post(
        f"/api/v1/projects/{pid}/container/exec",
        json={"command": ["sh", "-c", script], "timeout_s": 20},
        headers=owner.headers,
    )
    assert done.status_code == 200, done.text
    assert done.json()["exit_code"] == 0, done.text
    return str(done.json()["stdout"])


async def test_terminal_and_exec_through_the_agent(stack: Stack, http: httpx.AsyncClient) -> None:
    owner = await register(http, "nodocker")
    pid = (await create_project(http, owner))["id"]
    await start(http, owner, pid)
    assert await run(http, owner, pid, "echo $((6*7))") == "42\n"
    status = (await http.get(f"/api/v1/projects/{pid}/container", headers=owner.headers)).json()
    assert status["status"] == "running"
    url = stack.api.replace("http://", "ws://") + f"/api/v1/projects/{pid}/terminal"
    async with connect(url, additional_headers=owner.headers) as ws:
        await ws.send(json.dumps({"type": "resize", "cols": 90, "rows": 20}))
        await ws.send(b"stty size; echo $((20+22))ok\r")
        await read_until(ws, "20 90", "42ok")
        await ws.send(json.dumps({"type": "ping"}))
        while (message := await asyncio.wait_for(ws.recv(), 10)) and isinstance(message, bytes):
            pass
        assert json.loads(message) == {"type": "pong"}
        await ws.send(b"exit 3\r")
        while isinstance(message := await asyncio.wait_for(ws.recv(), 10), bytes):
            pass
        assert json.loads(message) == {"type": "exit", "exit_code": 3}
    assert ws.close_code == 1000
    await http.post(f"/api/v1/projects/{pid}/container/stop", headers=owner.headers)


# --- previews --------------------------------------------------------------------------


@dataclass
class Served:
    owner: Account
    pid: str


@pytest.fixture
async def served(stack: Stack, http: httpx.AsyncClient) -> AsyncIterator[Served]:
    """A running container whose port 3000 is busybox httpd and 3001 a WebSocket echo."""
    owner = await register(http, "preview")
    pid = (await create_project(http, owner))["id"]
    await start(http, owner, pid, network="bridge", ports=[3000, 3001])
    script = (
        "cd /workspace && echo 'hello from the preview' > index.html"
        " && dd if=/dev/zero of=big.bin bs=65536 count=32 2>/dev/null"
        " && cat > ws.sh <<'SCRIPT'\n" + WS_SCRIPT + "SCRIPT\n"
        "chmod 755 ws.sh && httpd -p 3000 -h /workspace"
        " && (nc -ll -p 3001 -e /workspace/ws.sh </dev/null >/dev/null 2>&1 &)"
    )
    await run(http, owner, pid, script)
    yield Served(owner, pid)
    await http.post(f"/api/v1/projects/{pid}/container/stop", headers=owner.headers)


@dataclass
class Entered:
    host: str  # the preview's origin's host, e.g. <id>.preview.localhost:8001
    origin: str
    cookie: str  # "name=value"


async def open_preview(
    stack: Stack, http: httpx.AsyncClient, account: Account, pid: str, port: int
) -> httpx.Response:
    return await http.post(
        f"/api/v1/projects/{pid}/previews", json={"port": port}, headers=account.headers
    )


def preview_client(stack: Stack) -> httpx.AsyncClient:
    """Requests to the preview origin's listener; the Host header names the preview (browsers
    resolve `*.localhost` themselves, this machine's resolver does not)."""
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.previews_port}", timeout=30)


async def enter(
    stack: Stack, http: httpx.AsyncClient, account: Account, pid: str, port: int
) -> Entered:
    opened = await open_preview(stack, http, account, pid, port)
    assert opened.status_code == 201, opened.text
    body = opened.json()
    url = httpx.URL(body["url"])
    assert body["origin"] == f"{url.scheme}://{url.netloc.decode()}"
    assert url.path == "/p/enter"
    host = url.netloc.decode()
    assert re.fullmatch(r"[0-9a-f]{32}\.preview\.localhost:\d+", host), host
    async with preview_client(stack) as client:
        entered = await client.get(f"/p/enter?{url.query.decode()}", headers={"Host": host})
        assert entered.status_code == 303, entered.text
        assert entered.headers["location"] == "/"
        set_cookie = entered.headers["set-cookie"]
        attributes = {part.strip().split("=")[0].lower() for part in set_cookie.split(";")}
        assert {"httponly", "path", "samesite"} <= attributes, set_cookie
        assert "samesite=lax" in set_cookie.lower()
        assert "domain" not in attributes  # host-only: this preview's host and no other
        again = await client.get(f"/p/enter?{url.query.decode()}", headers={"Host": host})
        assert again.status_code == 401  # the ticket worked once
    return Entered(host, body["origin"], set_cookie.split(";")[0])


async def fetch(
    stack: Stack, entered: Entered, path: str = "/", cookie: str | None = None
) -> httpx.Response:
    headers = {"Host": entered.host}
    if cookie is not None:
        headers["Cookie"] = cookie
    async with preview_client(stack) as client:
        return await client.get(path, headers=headers)


async def test_preview_http_and_websocket(
    stack: Stack, http: httpx.AsyncClient, served: Served
) -> None:
    page = await enter(stack, http, served.owner, served.pid, 3000)
    assert not page.origin.startswith(stack.api)

    async def serving() -> bool:
        return (await fetch(stack, page, cookie=page.cookie)).status_code == 200

    await wait_until(serving, timeout=10, what="busybox httpd through the preview")
    answer = await fetch(stack, page, cookie=page.cookie)
    assert answer.text == "hello from the preview\n"
    big = await fetch(stack, page, "/big.bin", cookie=page.cookie)
    assert big.status_code == 200
    assert big.content == bytes(65536 * 32)
    missing = await fetch(stack, page, "/nothing-here", cookie=page.cookie)
    assert missing.status_code == 404  # httpd's answer, relayed
    assert (await fetch(stack, page)).status_code == 401  # no cookie
    assert (await fetch(stack, page, cookie=page.cookie + "x")).status_code == 401

    echo = await enter(stack, http, served.owner, served.pid, 3001)
    assert echo.host != page.host
    # One preview's cookie is nothing on another preview's origin.
    value = page.cookie.split("=", 1)[1]
    forged = f"{echo.cookie.split('=', 1)[0]}={value}"
    assert (await fetch(stack, echo, cookie=forged)).status_code == 401

    async with connect(
        f"ws://{echo.host}/hot/reload?token=1",
        host="127.0.0.1",
        port=stack.previews_port,
        origin=echo.origin,  # type: ignore[arg-type]
        additional_headers={"Cookie": echo.cookie},
        compression=None,
    ) as ws:
        assert await asyncio.wait_for(ws.recv(), 10) == "path:/hot/reload?token=1"
        await ws.send("hello frames")
        assert await asyncio.wait_for(ws.recv(), 10) == "hello frames"
        await ws.send(b"\x00\x01binary")
        assert await asyncio.wait_for(ws.recv(), 10) == b"\x00\x01binary"

    for origin, cookie, status in (
        ("http://evil.example", echo.cookie, 403),  # someone else's page
        (echo.origin, None, 401),
    ):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                f"ws://{echo.host}/hot",
                host="127.0.0.1",
                port=stack.previews_port,
                origin=origin,  # type: ignore[arg-type]
                additional_headers={"Cookie": cookie} if cookie else {},
            ):
                pass
        assert refused.value.response.status_code == status

    # Never on the API's origin.
    async with httpx.AsyncClient(base_url=stack.api) as api:
        assert (await api.get("/p/enter?ticket=x")).status_code == 404

    stopped = await http.post(
        f"/api/v1/projects/{served.pid}/container/stop", headers=served.owner.headers
    )
    assert stopped.json()["status"] == "stopped"

    async def closed() -> bool:
        return (await fetch(stack, page, cookie=page.cookie)).status_code == 410

    await wait_until(closed, timeout=5, what="the preview to close with its container")
    refused_now = await open_preview(stack, http, served.owner, served.pid, 3000)
    assert refused_now.status_code == 409


async def test_previews_are_for_members(
    stack: Stack, http: httpx.AsyncClient, served: Served
) -> None:
    viewer, stranger = await register(http, "pviewer"), await register(http, "pstranger")
    added = await http.post(
        f"/api/v1/projects/{served.pid}/members",
        json={"email": viewer.email, "role": "viewer"},
        headers=served.owner.headers,
    )
    assert added.status_code == 201, added.text
    assert (await open_preview(stack, http, stranger, served.pid, 3000)).status_code == 404
    unpublished = await open_preview(stack, http, viewer, served.pid, 4000)
    assert unpublished.status_code == 409
    assert unpublished.json()["error"]["code"] == "port_not_published"

    seen = await enter(stack, http, viewer, served.pid, 3000)  # viewers may view

    async def serving() -> bool:
        return (await fetch(stack, seen, cookie=seen.cookie)).status_code == 200

    await wait_until(serving, timeout=10, what="the viewer's preview")
    removed = await http.delete(
        f"/api/v1/projects/{served.pid}/members/{viewer.id}", headers=served.owner.headers
    )
    assert removed.status_code == 204
    started = time.monotonic()

    async def refused() -> bool:
        return (await fetch(stack, seen, cookie=seen.cookie)).status_code == 404

    await wait_until(refused, timeout=3, what="the removed member's preview to be refused")
    assert time.monotonic() - started < 2.5
