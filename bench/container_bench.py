"""Latency of project containers through the API: cold start, warm start (a claim from the
warm pool), ensure_running on a running container, exec round trip, status and stop.

    python bench/container_bench.py [--projects 20] [--execs 50] [--url http://127.0.0.1:8000]

Warm starts ask for the pool's spec (the default image and resources) and are timed only once
the pool is full again (`GET` polls; nothing is timed meanwhile), i.e. "a pooled container is
available"; cold starts ask for other resources, which the pool never serves.

Without --url it starts its own stack (bench/stack.py: API and worker as processes, the
Temporal dev server, a fresh database) on the local Docker engine with the busybox runtime
image (built first if missing). Every container it starts is stopped again.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker

from bench.stack import stack
from bench.stats import percentile
from workflows.container_shared import LABEL_POOL, POOL_NAME_PREFIX

IMAGE = "vaporform/runtime-busybox:latest"


def report(name: str, samples: list[float]) -> None:
    print(
        f"{name:<34} n={len(samples):<4} p50={percentile(samples, 50):7.1f} ms  "
        f"p95={percentile(samples, 95):7.1f} ms  max={max(samples):7.1f} ms",
        flush=True,
    )


async def timed(call: object) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = await call  # type: ignore[misc]
    return (time.perf_counter() - started) * 1000, response


async def run(
    base: str, projects: int, execs: int, pool: Callable[[], Awaitable[None]] | None = None
) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        registered = await http.post(
            "/api/v1/auth/register",
            json={"email": email, "password": "correct horse battery", "name": "Bench"},
        )
        headers = {"Authorization": f"Bearer {registered.json()['access_token']}"}
        pids = []
        for i in range(projects):
            made = await http.post("/api/v1/projects", json={"name": f"b{i}"}, headers=headers)
            pids.append(made.json()["id"])
        body = {"image": IMAGE, "resources": {"cpus": 0.5, "memory_mb": 128, "pids": 128}}
        cold, warm, exec_ms, status_ms, stop_ms = [], [], [], [], []
        claims: list[float] = []
        missed: list[float] = []  # the pool's state had not caught up: a cold start
        try:
            for pid in pids:
                ms, answer = await timed(
                    http.post(f"/api/v1/projects/{pid}/container", json=body, headers=headers)
                )
                assert answer.json()["status"] == "running", answer.text
                cold.append(ms)
                for _ in range(3):
                    ms, answer = await timed(
                        http.post(f"/api/v1/projects/{pid}/container", json=body, headers=headers)
                    )
                    warm.append(ms)
                ms, _ = await timed(http.get(f"/api/v1/projects/{pid}/container", headers=headers))
                status_ms.append(ms)
            if pool is not None:
                for _ in range(projects):
                    made = await http.post("/api/v1/projects", json={"name": "w"}, headers=headers)
                    pid = made.json()["id"]
                    pids.append(pid)
                    await pool()
                    ms, answer = await timed(
                        http.post(f"/api/v1/projects/{pid}/container", json={}, headers=headers)
                    )
                    assert answer.json()["status"] == "running", answer.text
                    labels = docker.from_env().containers.get(answer.json()["container_id"]).labels
                    if LABEL_POOL in labels:
                        claims.append(ms)
                    else:
                        missed.append(ms)
            for i in range(execs):
                pid = pids[i % len(pids)]
                ms, answer = await timed(
                    http.post(
                        f"/api/v1/projects/{pid}/container/exec",
                        json={"command": ["echo", "hi"]},
                        headers=headers,
                    )
                )
                assert answer.json()["stdout"] == "hi\n", answer.text
                exec_ms.append(ms)
        finally:
            for pid in pids:
                ms, _ = await timed(
                    http.post(f"/api/v1/projects/{pid}/container/stop", headers=headers)
                )
                stop_ms.append(ms)
    report("cold start (create+start+healthy)", cold)
    if claims:
        report("warm start (claim from the pool)", claims)
    if missed:
        report("warm asked, pool not ready: cold", missed)
    report("ensure_running, already running", warm)
    report("GET container (status query)", status_ms)
    report("exec `echo hi` round trip", exec_ms)
    report("stop (stop+remove)", stop_ms)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--projects", type=int, default=20)
    parser.add_argument("--execs", type=int, default=50)
    parser.add_argument("--url", help="an API that is already running (its worker too)")
    parser.add_argument("--pool", type=int, default=2, help="warm pool size (0: cold only)")
    args = parser.parse_args()

    async def go() -> None:
        if args.url:
            await run(args.url, args.projects, args.execs)
            return
        from vaporform.images import ensure_built

        ensure_built(docker.from_env(), "busybox", progress=print)
        queue = f"docker-bench-{uuid.uuid4().hex[:8]}"
        env = {
            "VAPORFORM_DOCKER_QUEUE": queue,
            "VAPORFORM_CONTAINER_IMAGE": IMAGE,
            "VAPORFORM_POOL_SIZE": str(args.pool),
        }
        async with stack(env) as base:
            engine = docker.from_env()

            async def pool_full() -> None:
                """Every member of the pool runs (its state follows within a task hop)."""
                deadline = time.monotonic() + 60
                while True:
                    members = engine.containers.list(
                        filters={"label": LABEL_POOL, "name": POOL_NAME_PREFIX, "status": "running"}
                    )
                    if len(members) >= args.pool:
                        return
                    if time.monotonic() > deadline:
                        raise RuntimeError("the pool did not fill within 60 s")
                    await asyncio.sleep(0.05)

            await run(base, args.projects, args.execs, pool_full if args.pool else None)

    asyncio.run(go())
    return 0


if __name__ == "__main__":
    sys.exit(main())
