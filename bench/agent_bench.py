"""Terminal round trip and preview request latency through the agent.

    python bench/agent_bench.py [--keys 200] [--requests 200]

Starts a throwaway stack (bench/stack.py: Temporal dev server, worker with this host's agent
in it, API) plus the preview origin (`vaporform previews`), with the busybox runtime image and
no pool. One project's container publishes port 3000, where `busybox httpd` serves a small
page. Measured, each after an untimed warm-up:

- terminal: one keystroke sent on the terminal WebSocket until the tty's echo of it comes back
  (browser -> API -> agent -> docker exec -> and back), and the same straight to the agent
  with a grant (no API hop);
- preview: `GET /` of the page through the preview origin with its cookie (browser -> preview
  origin -> agent -> 127.0.0.1:<published port>), through the agent alone with a fresh grant
  per request, and straight to the published port (the floor).

Prints p50/p99 per line (milliseconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from websockets.asyncio.client import ClientConnection, connect

from agent.grants import HEADER, agent_key, mint
from bench.stack import ME, bench_user, free_port, running_stack
from bench.stats import p50_p99_line
from vaporform.config import load_config
from vaporform.images import ensure_built


async def keystrokes(ws: ClientConnection, count: int) -> list[float]:
    samples = []
    for index in range(count):
        key = "abcdefghij"[index % 10]
        started = time.perf_counter()
        await ws.send(key.encode())
        seen = ""
        while key not in seen:
            message = await asyncio.wait_for(ws.recv(), 10)
            if isinstance(message, bytes):
                seen += message.decode(errors="replace")
        samples.append((time.perf_counter() - started) * 1000)
    await ws.send(b"\x15")  # ^U: forget the typed line
    return samples


async def quiet(ws: ClientConnection) -> None:
    """Wait until the shell's prompt has come and nothing else arrives."""
    await ws.send(b"echo ready\r")
    seen = ""
    while "ready\r\n" not in seen:
        message = await asyncio.wait_for(ws.recv(), 10)
        if isinstance(message, bytes):
            seen += message.decode(errors="replace")
    while True:
        try:
            await asyncio.wait_for(ws.recv(), 0.3)
        except TimeoutError:
            return


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    import docker

    engine = docker.from_env()
    ensure_built(engine, "busybox", progress=lambda _: None)
    engine.close()
    agent_port, preview_port = free_port(), free_port()
    extra = {
        "VAPORFORM_CONTAINER_IMAGE": "vaporform/runtime-busybox:latest",
        "VAPORFORM_POOL_SIZE": "0",
        "VAPORFORM_DOCKER_QUEUE": f"docker-bench-{uuid.uuid4().hex[:8]}",
        "VAPORFORM_AGENT_PORT": str(agent_port),
        "VAPORFORM_PREVIEW_PORT": str(preview_port),
        "VAPORFORM_JWT_SECRET": "bench-secret-" + uuid.uuid4().hex * 2,
    }
    async with running_stack(extra) as st:
        config = load_config(st.env)
        previews = subprocess.Popen([*ME, "previews"], env=st.env, stdout=st.log, stderr=st.log)
        try:
            return await measure(st.base_url, config, preview_port, args.keys, args.requests)
        finally:
            previews.terminate()
            previews.wait(15)


async def measure(base: str, config: object, preview_port: int, keys: int, requests: int) -> int:
    from vaporform.config import Config

    assert isinstance(config, Config)
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        for _ in range(300):
            try:
                if (await http.get("/readyz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        headers = await bench_user(http)
        pid = (await http.post("/api/v1/projects", json={"name": "b"}, headers=headers)).json()[
            "id"
        ]
        base_c = f"/api/v1/projects/{pid}/container"
        for _ in range(100):  # the worker's agent may still be starting
            started = await http.post(
                base_c, json={"network": "bridge", "ports": [3000]}, headers=headers
            )
            if started.json().get("status") == "running":
                break
            await asyncio.sleep(0.2)
        status = started.json()
        assert status["status"] == "running", status
        script = "cd /workspace && echo hello > index.html && httpd -p 3000 -h /workspace"
        ran = await http.post(
            f"{base_c}/exec", json={"command": ["sh", "-c", script]}, headers=headers
        )
        assert ran.json()["exit_code"] == 0, ran.text
        try:
            print(f"stack: API {base}, agent {config.agent.default_url}, previews :{preview_port}")
            ws_url = base.replace("http://", "ws://") + f"/api/v1/projects/{pid}/terminal"
            async with connect(ws_url, additional_headers=headers, compression=None) as ws:
                await quiet(ws)
                await keystrokes(ws, 20)
                via_api = await keystrokes(ws, keys)
            grant = mint(
                agent_key(config),
                issuer=config.jwt.issuer,
                user_id="bench",
                project_id=pid,
                container_id=status["container_id"],
                purpose="terminal",
            )
            agent_ws = config.agent.default_url.replace("http://", "ws://") + "/v1/terminal"
            async with connect(
                agent_ws, additional_headers={HEADER: grant}, compression=None
            ) as ws:
                await quiet(ws)
                await keystrokes(ws, 20)
                direct = await keystrokes(ws, keys)
            print(p50_p99_line("terminal keystroke echo, browser -> API -> agent", via_api))
            print(p50_p99_line("terminal keystroke echo, straight to the agent", direct))

            opened = await http.post(
                f"/api/v1/projects/{pid}/previews", json={"port": 3000}, headers=headers
            )
            entry = httpx.URL(opened.json()["url"])
            host = entry.netloc.decode()
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{preview_port}", timeout=30
            ) as client:
                entered = await client.get(
                    f"/p/enter?{entry.query.decode()}", headers={"Host": host}
                )
                assert entered.status_code == 303, (entered.status_code, entered.text)
                cookie = entered.headers["set-cookie"].split(";")[0]
                hdrs = {"Host": host, "Cookie": cookie}
                for _ in range(300):  # httpd may take a moment to listen
                    if (await client.get("/", headers=hdrs)).status_code == 200:
                        break
                    await asyncio.sleep(0.05)
                samples = []
                for index in range(requests + 20):
                    t0 = time.perf_counter()
                    answer = await client.get("/", headers=hdrs)
                    assert answer.status_code == 200, answer.text
                    if index >= 20:
                        samples.append((time.perf_counter() - t0) * 1000)
            print(
                p50_p99_line("preview GET /, browser -> preview origin -> agent -> port", samples)
            )
            host_port = status["ports"]["3000"]
            async with httpx.AsyncClient(timeout=30) as client:
                via_agent, floor = [], []
                for index in range(requests + 20):
                    grant = mint(
                        agent_key(config),
                        issuer=config.jwt.issuer,
                        user_id="bench",
                        project_id=pid,
                        container_id=status["container_id"],
                        purpose="preview",
                        port=host_port,
                    )
                    t0 = time.perf_counter()
                    answer = await client.get(
                        config.agent.default_url + "/v1/preview/", headers={HEADER: grant}
                    )
                    assert answer.status_code == 200, answer.text
                    t1 = time.perf_counter()
                    assert (await client.get(f"http://127.0.0.1:{host_port}/")).status_code == 200
                    t2 = time.perf_counter()
                    if index >= 20:
                        via_agent.append((t1 - t0) * 1000)
                        floor.append((t2 - t1) * 1000)
            print(
                p50_p99_line("preview GET /, straight to the agent (grant per request)", via_agent)
            )
            print(p50_p99_line("preview GET /, straight to the published port (floor)", floor))
            print(json.dumps({"loadavg": Path("/proc/loadavg").read_text().split()[:3]}))
        finally:
            await http.post(f"{base_c}/stop", headers=headers)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
