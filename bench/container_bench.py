"""Latency of project containers through the API: cold start, warm claim from the pool,
ensure_running on a running container, status, exec round trip, stop, and recovery from a
worker SIGKILLed in the middle of provisioning.

    python bench/container_bench.py [--projects 20] [--claims 20] [--pool 2] [--execs 50]
                                    [--crashes 5] [--phases cold,warm,crash]

Each phase starts its own throwaway stack (bench/stack.py: API and worker as processes, the
Temporal dev server, a fresh database) on the local Docker engine with the busybox runtime
image (built first if missing), and every container it starts is stopped again:

- cold: `VAPORFORM_POOL_SIZE=0`; each project's first `POST .../container` (default spec)
  creates, starts and health-checks a container (one untimed warm-up start first: the fresh
  worker's first one takes seconds). Then `ensure_running` again, `GET` status,
  `exec echo hi` round trips and stop (stop + remove).
- warm: `VAPORFORM_POOL_SIZE=--pool`; before each sample the bench waits (untimed) until the
  pool workflow reports every member ready and none being made, so a claim never competes
  with a refill. A sample counts only when the answer names a container the pool listed as
  ready just before; the others are reported apart as misses. The workflow history of every
  counted claim is read back to show where the time goes (Temporal hops, the claim, adoption).
- crash: `VAPORFORM_POOL_SIZE=0`; `POST .../container` is sent, the worker process is SIGKILLed
  as soon as the project's container exists (provisioning is then between create and
  healthy), a replacement worker is started with the same environment, and the time to the
  POST's answer is measured from the kill (including the new process's start) and from the
  moment the new worker polls both its task queues (excluding it). A sample where provisioning
  finished before the kill landed is dropped and retried.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker
from temporalio.api.enums.v1 import EventType, TaskQueueType, TimeoutType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError

from bench.stack import Stack, bench_user, running_stack
from bench.stats import percentile
from vaporform.temporal_setup import ensure_pools
from workflows.containers.names import (
    LABEL_PROJECT,
    container_workflow_id,
    normalise_image,
    pool_workflow_id,
)
from workflows.containers.pool import ContainerPoolWorkflow

IMAGE = "vaporform/runtime-busybox:latest"


@dataclass
class Results:
    samples: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    notes: list[str] = field(default_factory=list)
    # warm claims: step name -> per-sample ms, from the workflow histories
    trace: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    load: list[str] = field(default_factory=list)
    # warm claims: project id -> (its 1st workflow task started, completed), ms since the epoch
    first_task: dict[str, tuple[float, float]] = field(default_factory=dict)
    cold_first_task: list[float] = field(default_factory=list)  # ms, no local activity in it


def loadavg(when: str) -> str:
    one, five, fifteen = os.getloadavg()
    return f"{when}: load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


class NotRunning(Exception):
    """A container that did not run. On a shared Docker engine this happens when another
    session's test teardown removes every labelled container, its own or not: such a sample
    is reported as dropped, not timed."""


class Api:
    """One registered user on a stack's API."""

    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.http, self.headers = http, headers

    @classmethod
    async def register(cls, http: httpx.AsyncClient) -> Api:
        return cls(http, await bench_user(http))

    async def project(self) -> str:
        made = await self.http.post("/api/v1/projects", json={"name": "b"}, headers=self.headers)
        made.raise_for_status()
        return str(made.json()["id"])

    async def timed(self, method: str, path: str, **kwargs: Any) -> tuple[float, Any]:
        started = time.perf_counter()
        answer = await self.http.request(method, path, headers=self.headers, **kwargs)
        ms = (time.perf_counter() - started) * 1000
        assert answer.status_code < 300, answer.text
        return ms, answer.json() if answer.content else None

    async def start(self, pid: str) -> tuple[float, Any]:
        ms, body = await self.timed("POST", f"/api/v1/projects/{pid}/container", json={})
        if body["status"] != "running":
            raise NotRunning(f"project {pid[:8]}: {body['status']}: {body.get('error')}")
        return ms, body

    async def stop(self, pid: str) -> float:
        ms, body = await self.timed("POST", f"/api/v1/projects/{pid}/container/stop")
        if body["status"] != "stopped":
            raise NotRunning(f"project {pid[:8]}: stop answered {body['status']}")
        return ms


def project_containers(engine: docker.DockerClient, pid: str) -> list[dict[str, Any]]:
    """The project's containers as the engine lists them ({"Id", "State", ...}): one call,
    with no inspect per container that a concurrent removal could make fail."""
    found: list[dict[str, Any]] = engine.api.containers(
        all=True, filters={"label": f"{LABEL_PROJECT}={pid}"}
    )
    return found


# --- cold ----------------------------------------------------------------------------------


async def first_task_ms(client: Client, pid: str) -> float:
    """How long the first workflow task of the project's ContainerWorkflow ran."""
    history = await client.get_workflow_handle(container_workflow_id(pid)).fetch_history()
    started = completed = None
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED and started is None:
            started = _time(event)
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            completed = _time(event)
            break
    assert started is not None
    assert completed is not None
    return completed - started


async def cold_phase(st: Stack, projects: int, execs: int, out: Results) -> None:
    client = await Client.connect(st.temporal_address)
    async with httpx.AsyncClient(base_url=st.base_url, timeout=120) as http:
        api = await Api.register(http)
        pids = [await api.project() for _ in range(projects)]
        # The first start after the worker started pays for its first Docker calls and
        # imports: reported apart, not mixed into the cold-start percentiles.
        first = await api.project()
        ms, _ = await api.start(first)
        out.notes.append(f"first cold start of a fresh worker (warm-up, not counted): {ms:.0f} ms")
        await api.stop(first)
        try:
            for pid in pids:
                try:
                    ms, _ = await api.start(pid)
                    out.samples["cold start (pool size 0)"].append(ms)
                    out.cold_first_task.append(await first_task_ms(client, pid))
                    for _ in range(3):
                        ms, _ = await api.start(pid)
                        out.samples["ensure_running, already running"].append(ms)
                except NotRunning as exc:
                    out.notes.append(f"cold sample dropped: {exc}")
                    continue
                ms, _ = await api.timed("GET", f"/api/v1/projects/{pid}/container")
                out.samples["GET container (status query)"].append(ms)
            for i in range(execs):
                started = time.perf_counter()
                answer = await http.post(
                    f"/api/v1/projects/{pids[i % len(pids)]}/container/exec",
                    json={"command": ["echo", "hi"]},
                    headers=api.headers,
                )
                ms = (time.perf_counter() - started) * 1000
                if answer.status_code != 200 or answer.json()["stdout"] != "hi\n":
                    out.notes.append(f"exec sample dropped: {answer.status_code} {answer.text}")
                    continue
                out.samples["exec `echo hi` round trip"].append(ms)
        finally:
            for pid in pids:
                try:
                    out.samples["stop (stop + remove)"].append(await api.stop(pid))
                except NotRunning as exc:
                    out.notes.append(f"stop sample dropped: {exc}")


# --- warm ----------------------------------------------------------------------------------


def _time(event: Any) -> float:
    return float(event.event_time.ToMicroseconds()) / 1000  # ms since the epoch


async def trace_pool(client: Client, pool_id: str, out: Results) -> None:
    """The pool's side of each claim: the workflow task that accepted the `claim` update."""
    history = await client.get_workflow_handle(pool_id).fetch_history()
    last: dict[int, Any] = {}
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            request = event.workflow_execution_update_accepted_event_attributes.accepted_request
            claim = json.loads(request.input.args.payloads[0].data)
            if claim["project_id"] not in out.first_task:
                last[event.event_type] = event
                continue
            begin, end = out.first_task[claim["project_id"]]
            scheduled = last[EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED]
            started = last[EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED]
            completed = last[EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
            out.trace["  pool: claim workflow task scheduled -> picked up"].append(
                _time(started) - _time(scheduled)
            )
            out.trace["  pool: claim workflow task run"].append(_time(completed) - _time(started))
            out.trace["  container task started -> pool task scheduled"].append(
                _time(scheduled) - begin
            )
            out.trace["  pool task completed -> container task completed"].append(
                end - _time(completed)
            )
        last[event.event_type] = event


async def trace_claim(
    client: Client, pid: str, sent_ms: float, answered_ms: float, out: Results
) -> None:
    """Split one warm claim into steps by the events of its ContainerWorkflow history."""
    history = await client.get_workflow_handle(container_workflow_id(pid)).fetch_history()
    events = []
    for event in history.events:
        events.append(event)
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
            break
    by_type: dict[int, list[Any]] = defaultdict(list)
    for event in events:
        by_type[event.event_type].append(event)
    started = by_type[EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED][0]
    wft_started = by_type[EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED]
    wft_completed = by_type[EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
    act_scheduled = by_type[EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    act_started = by_type[EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]
    act_completed = by_type[EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED]
    done = by_type[EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED][0]
    if len(act_scheduled) != 1 or len(wft_started) != 2:
        out.notes.append(f"claim of {pid[:8]}: unexpected history shape, not traced")
        return
    steps = [
        ("API -> workflow started (update-with-start)", sent_ms, _time(started)),
        ("started -> 1st workflow task picked up", _time(started), _time(wft_started[0])),
        (
            "1st workflow task (local activity: pool claim update)",
            _time(wft_started[0]),
            _time(wft_completed[0]),
        ),
        (
            "adopt activity scheduled -> picked up (docker queue)",
            _time(act_scheduled[0]),
            _time(act_started[0]),
        ),
        (
            "docker_adopt_pooled (rename, workspace swap)",
            _time(act_started[0]),
            _time(act_completed[0]),
        ),
        (
            "activity done -> 2nd workflow task picked up",
            _time(act_completed[0]),
            _time(wft_started[1]),
        ),
        ("2nd workflow task -> update completed", _time(wft_started[1]), _time(done)),
        ("update completed -> HTTP answer", _time(done), answered_ms),
    ]
    out.first_task[pid] = (_time(wft_started[0]), _time(wft_completed[0]))
    for name, begin, end in steps:
        out.trace[name].append(end - begin)


async def warm_phase(st: Stack, claims: int, pool_size: int, out: Results) -> None:
    client = await Client.connect(st.temporal_address)
    docker_queue = st.env["VAPORFORM_DOCKER_QUEUE"]
    pool = client.get_workflow_handle_for(
        ContainerPoolWorkflow.run, pool_workflow_id(docker_queue, normalise_image(IMAGE))
    )

    async def ready_members() -> set[str]:
        """Wait (untimed) until the pool is full and makes nothing; its ready container ids."""
        deadline = time.monotonic() + 120
        while True:
            try:
                status = await pool.query(ContainerPoolWorkflow.status)
                if len(status.ready) >= pool_size and status.creating == 0:
                    return {m.container_id for m in status.ready}
            except RPCError:  # not started yet: the worker starts it
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the pool did not fill within 120 s")
            await asyncio.sleep(0.05)

    async with httpx.AsyncClient(base_url=st.base_url, timeout=120) as http:
        api = await Api.register(http)
        counted = 0
        for _ in range(claims * 2):
            if counted == claims:
                break
            pid = await api.project()
            ready = await ready_members()
            await asyncio.sleep(0.2)  # let the project's creation workflow settle
            sent = time.time() * 1000
            try:
                ms, body = await api.start(pid)
            except NotRunning as exc:
                out.notes.append(f"warm sample dropped: {exc}")
                continue
            answered = time.time() * 1000
            if body["container_id"] in ready:
                counted += 1
                out.samples["warm claim from the pool"].append(ms)
                await trace_claim(client, pid, sent, answered, out)
            else:
                out.samples["warm asked, not from the pool (miss)"].append(ms)
            out.samples["stop (stop + remove)"].append(await api.stop(pid))
    await trace_pool(client, pool.id, out)
    # Drained: the pool removes its unclaimed members, then completes.
    await ensure_pools(client, st.task_queue, docker_queue, {normalise_image(IMAGE): 0})
    await asyncio.wait_for(pool.result(), timeout=60)


# --- crash ---------------------------------------------------------------------------------


async def worker_polls(
    client: Client, process_id: int, queues: list[tuple[str, TaskQueueType.ValueType]]
) -> float:
    """perf_counter() when the worker process `process_id` polls every (queue, type) given."""
    identity = f"{process_id}@{socket.gethostname()}"
    waiting = list(queues)
    while waiting:
        name, kind = waiting[0]
        answer = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=name),
                task_queue_type=kind,
            )
        )
        if any(p.identity == identity for p in answer.pollers):
            waiting.pop(0)
            continue
        await asyncio.sleep(0.02)
    return time.perf_counter()


async def timeouts(client: Client, pid: str, killed_ms: float) -> str:
    """What Temporal waited for after the kill: the timed-out tasks in the history."""
    history = await client.get_workflow_handle(container_workflow_id(pid)).fetch_history()
    names: dict[int, str] = {}  # scheduled event id -> activity type
    found = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            names[event.event_id] = (
                event.activity_task_scheduled_event_attributes.activity_type.name
            )
            continue
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
            kind = event.workflow_task_timed_out_event_attributes.timeout_type
            found.append(f"workflow task {TimeoutType.Name(kind)}")
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            found.append("workflow task failed")
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
            timed_out = event.activity_task_timed_out_event_attributes
            kind = timed_out.failure.timeout_failure_info.timeout_type
            found.append(f"{names.get(timed_out.scheduled_event_id)} {TimeoutType.Name(kind)}")
        else:
            continue
        found[-1] += f" at +{(_time(event) - killed_ms) / 1000:.1f} s"
    # Activity retries within their own timeout do not appear as events: the last attempt does.
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attempt = event.activity_task_started_event_attributes.attempt
            if attempt > 1:
                scheduled = event.activity_task_started_event_attributes.scheduled_event_id
                found.append(f"{names.get(scheduled)} attempt {attempt}")
    return "history: " + (", ".join(found) or "no timeouts")


async def crash_phase(st: Stack, crashes: int, out: Results) -> None:
    client = await Client.connect(st.temporal_address)
    engine = docker.from_env()
    queues = [
        (st.task_queue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
        (st.env["VAPORFORM_DOCKER_QUEUE"], TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
    ]
    await worker_polls(client, st.worker.pid, queues)
    async with httpx.AsyncClient(base_url=st.base_url, timeout=120) as http:
        api = await Api.register(http)
        done, dropped = 0, 0
        while done < crashes and dropped < crashes * 3:
            pid = await api.project()
            await asyncio.sleep(0.2)
            request = asyncio.create_task(api.start(pid))
            while not await asyncio.to_thread(project_containers, engine, pid):
                if request.done():
                    break
                await asyncio.sleep(0.005)
            if request.done():
                dropped += 1
                with contextlib.suppress(NotRunning):
                    await request
                    await api.stop(pid)
                continue
            st.kill_worker()
            killed = time.perf_counter()
            killed_epoch_ms = time.time() * 1000
            if request.done():  # the answer was already on its way
                dropped += 1
                st.start_worker()
                await worker_polls(client, st.worker.pid, queues)
                with contextlib.suppress(NotRunning):
                    await request
                    await api.stop(pid)
                continue
            at_kill = await asyncio.to_thread(project_containers, engine, pid)
            state = at_kill[0]["State"] if at_kill else "gone"
            spawned = time.perf_counter()
            replacement = st.start_worker()
            polling = asyncio.create_task(worker_polls(client, replacement.pid, queues))
            try:
                _, body = await request
            except NotRunning as exc:
                out.notes.append(f"crash sample dropped: {exc}")
                await polling
                continue
            answered = time.perf_counter()
            ready = await polling
            found = await asyncio.to_thread(project_containers, engine, pid)
            assert [c["Id"] for c in found] == [body["container_id"]], (found, body)
            assert found[0]["State"] == "running", found
            done += 1
            out.samples["SIGKILL -> provisioned, incl. worker start"].append(
                (answered - killed) * 1000
            )
            out.samples["SIGKILL -> provisioned, excl. worker start"].append(
                (answered - max(ready, killed)) * 1000
            )
            out.samples["replacement worker start (spawn -> polling)"].append(
                (ready - spawned) * 1000
            )
            out.notes.append(
                f"crash {done}: killed with the container {state}; "
                f"answer {(answered - killed):.2f} s after the kill, "
                f"{(answered - ready):.2f} s after the new worker polled; "
                + await timeouts(client, pid, killed_epoch_ms)
            )
            out.samples["stop (stop + remove)"].append(await api.stop(pid))
        if dropped:
            out.notes.append(f"crash: {dropped} sample(s) dropped (provisioned before the kill)")


# --- report --------------------------------------------------------------------------------


def report(out: Results) -> None:
    print("\n| what | n | p50 ms | p95 ms | max ms |\n|---|---|---|---|---|")
    for name, values in out.samples.items():
        if values:
            print(
                f"| {name} | {len(values)} | {percentile(values, 50):.0f} | "
                f"{percentile(values, 95):.0f} | {max(values):.0f} |"
            )
    if out.trace:
        print("\nwarm claim, where the time goes (median / p95 ms per step, workflow history):")
        for name, values in out.trace.items():
            print(f"  {name:<56} {statistics.median(values):7.1f} {percentile(values, 95):7.1f}")
    for name in ("cold start (pool size 0)", "warm claim from the pool"):
        if out.samples.get(name):
            print(f"{name}, in order (ms): {' '.join(f'{v:.0f}' for v in out.samples[name])}")
    if out.cold_first_task:
        values = out.cold_first_task
        print(
            f"cold start: 1st workflow task of a new ContainerWorkflow ran "
            f"p50 {statistics.median(values):.1f} ms, p95 {percentile(values, 95):.1f} ms"
        )
    for note, count in Counter(out.notes).items():
        print("  " + note + (f" (x{count})" if count > 1 else ""))
    for line in out.load:
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--projects", type=int, default=20, help="cold starts")
    parser.add_argument("--claims", type=int, default=20, help="warm claims counted")
    parser.add_argument("--pool", type=int, default=2, help="warm pool size")
    parser.add_argument("--execs", type=int, default=50)
    parser.add_argument("--crashes", type=int, default=5)
    parser.add_argument("--phases", default="cold,warm,crash")
    args = parser.parse_args()
    phases = set(args.phases.split(","))

    async def go() -> None:
        from vaporform.images import ensure_built

        ensure_built(docker.from_env(), "busybox", progress=print)
        out = Results()
        out.load.append(loadavg("before"))

        def env(pool: int) -> dict[str, str]:
            return {
                "VAPORFORM_DOCKER_QUEUE": f"docker-bench-{uuid.uuid4().hex[:8]}",
                "VAPORFORM_CONTAINER_IMAGE": IMAGE,
                "VAPORFORM_POOL_SIZE": str(pool),
            }

        if "cold" in phases:
            async with running_stack(env(0)) as st:
                await cold_phase(st, args.projects, args.execs, out)
            out.load.append(loadavg("after cold"))
        if "warm" in phases:
            async with running_stack(env(args.pool)) as st:
                await warm_phase(st, args.claims, args.pool, out)
            out.load.append(loadavg("after warm"))
        if "crash" in phases:
            async with running_stack(env(0)) as st:
                await crash_phase(st, args.crashes, out)
            out.load.append(loadavg("after crash"))
        report(out)

    asyncio.run(go())
    return 0


if __name__ == "__main__":
    sys.exit(main())
