"""The container figures the functional tests check only for behaviour: how soon a command past
its deadline is answered, and how fast an AI job's ensure finds a container someone started
with their own resources and ports (it reuses it as it is). The warm claim and the recovery
after a SIGKILLed worker, once asserted in tests/containers too, are bench/container_bench.py's
warm and crash phases.

    python bench/container_checks_bench.py [--timeouts 10] [--timeout-s 1] [--reuses 50]

One throwaway stack (bench/stack.py: API and worker as processes, the Temporal dev server, a
fresh database) on the local Docker engine with the busybox runtime image (built first if
missing), pool size 0; every container it starts is stopped again:

- timeout: `exec ["sleep", "30"]` with `timeout_s` through the API: the answer's
  `duration_ms`, the round trip, and how far past the deadline the answer came (the tests
  once asserted < 10 s for a 1 s deadline);
- reuse: a container started through the API with 0.5 CPU, 64 MiB, port 8080 on the bridge;
  then `ContainerClient.ensure(..., reuse_running=True)` with the default spec, as the AI jobs'
  `ai_ensure_container` calls it; each answer must name the same container.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker
from temporalio.client import Client

from bench.stack import Stack, bench_user, running_stack
from bench.stats import percentile
from vaporform.container_client import ContainerClient, ContainerHost
from workflows.containers.contract import ContainerSpec

IMAGE = "vaporform/runtime-busybox:latest"
CUSTOM = {"resources": {"cpus": 0.5, "memory_mb": 64, "pids": 64}, "ports": [8080]}


def row(name: str, values: list[float]) -> str:
    return (
        f"| {name} | {len(values)} | {percentile(values, 50):.0f} | "
        f"{percentile(values, 95):.0f} | {max(values):.0f} |"
    )


async def start(http: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]) -> Any:
    made = await http.post("/api/v1/projects", json={"name": "b"}, headers=headers)
    made.raise_for_status()
    pid = made.json()["id"]
    started = await http.post(f"/api/v1/projects/{pid}/container", json=body, headers=headers)
    status = started.json()
    if status["status"] != "running":
        raise RuntimeError(f"the container did not start: {status}")
    return pid, status


async def timeouts(st: Stack, n: int, timeout_s: float, out: dict[str, list[float]]) -> None:
    async with httpx.AsyncClient(base_url=st.base_url, timeout=120) as http:
        headers = await bench_user(http)
        pid, _ = await start(http, headers, {})
        try:
            for _ in range(n):
                began = time.perf_counter()
                answer = await http.post(
                    f"/api/v1/projects/{pid}/container/exec",
                    json={"command": ["sleep", "30"], "timeout_s": timeout_s},
                    headers=headers,
                )
                wall = (time.perf_counter() - began) * 1000
                result = answer.json()
                assert result["timed_out"], result
                out["timed-out exec: duration_ms (in the container)"].append(result["duration_ms"])
                out["timed-out exec: round trip through the API"].append(wall)
                out["timed-out exec: answer past the deadline"].append(wall - timeout_s * 1000)
        finally:
            await http.post(f"/api/v1/projects/{pid}/container/stop", headers=headers)


async def reuses(st: Stack, n: int, out: dict[str, list[float]]) -> None:
    temporal = await Client.connect(st.temporal_address)
    containers = ContainerClient(
        temporal,
        st.task_queue,
        ContainerHost(st.env["VAPORFORM_DOCKER_QUEUE"], health_timeout_s=20),
    )
    async with httpx.AsyncClient(base_url=st.base_url, timeout=120) as http:
        headers = await bench_user(http)
        pid, status = await start(http, headers, {**CUSTOM, "network": "bridge"})
        try:
            for _ in range(n):
                began = time.perf_counter()
                found = await containers.ensure(
                    pid, "bench", ContainerSpec(IMAGE), reuse_running=True
                )
                out["AI ensure, reusing a custom container"].append(
                    (time.perf_counter() - began) * 1000
                )
                assert found.container_id == status["container_id"], found
                assert found.ports == status["ports"], found
        finally:
            await http.post(f"/api/v1/projects/{pid}/container/stop", headers=headers)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--timeouts", type=int, default=10)
    parser.add_argument("--timeout-s", type=float, default=1.0)
    parser.add_argument("--reuses", type=int, default=50)
    args = parser.parse_args()

    async def go() -> None:
        from vaporform.images import ensure_built

        ensure_built(docker.from_env(), "busybox", progress=print)
        env = {
            "VAPORFORM_DOCKER_QUEUE": f"docker-bench-{uuid.uuid4().hex[:8]}",
            "VAPORFORM_CONTAINER_IMAGE": IMAGE,
            "VAPORFORM_POOL_SIZE": "0",
        }
        out: dict[str, list[float]] = {}
        for name in (
            "timed-out exec: duration_ms (in the container)",
            "timed-out exec: round trip through the API",
            "timed-out exec: answer past the deadline",
            "AI ensure, reusing a custom container",
        ):
            out[name] = []
        async with running_stack(env) as st:
            await timeouts(st, args.timeouts, args.timeout_s, out)
            await reuses(st, args.reuses, out)
        print(f"\ntimeout_s {args.timeout_s:g}\n")
        print("| what | n | p50 ms | p95 ms | max ms |\n|---|---|---|---|---|")
        for name, values in out.items():
            if values:
                print(row(name, values))

    asyncio.run(go())
    return 0


if __name__ == "__main__":
    sys.exit(main())
