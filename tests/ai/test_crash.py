"""SIGKILL a real worker process (`python -m vaporform.cli worker`) in the middle of an AI job:
a new worker process finishes the job, and the model is not asked again for the step that had
finished.

Why a test-generation job: it is the one kind with a step after its model call that can be
held open from outside the worker, for as long as the test needs. Its model answer is a test
module that waits, at import, for a file in the container's /tmp; the run that imports it is a
`docker_exec` on the Docker queue, served by the test's in-process Docker worker, not by the
process that is killed. So the kill happens at a state read from Temporal, not at a moment
guessed with a sleep: `ai_ask` completed in the history, and the only pending activity is
that `docker_exec`. Nothing of the killed process is in flight (an activity it held would
only be retried after its timeout), and the command, which runs at most once, is not cut.
Review, debug and generation have nothing slow after their model call (only database steps
of milliseconds), so a kill there would land before or after the call by chance.

The worker processes serve a task queue of this test's own, through an API server that starts
workflows on it; the session's in-process AI worker never sees this job.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import docker
import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from tests.ai.crash_support import (
    completed_activities,
    data_dir_sharing_blobs,
    drop_schedules_on,
    pending_activities,
    project_containers,
    scheduled_activities,
    stop_project_container,
    worker_env,
    workflow_task_identities,
)
from tests.ai.fake_anthropic import FakeAnthropic, Reply
from tests.ai.helpers import answer, finished, put_file, start_job
from tests.conftest import serving
from tests.support import create_project, register, wait_until
from tests.worker_processes import WorkerProcesses
from vaporform.config import Config
from workflows.ai.contract import Kind, ai_workflow_id

RELEASE = "/tmp/vf-crash-release"

CALC = "def add(a, b):\n    return a + b\n"

# The model's answer: one good test, in a module whose import waits for RELEASE. Module level,
# so the runner's per-test alarm does not apply; the run's own timeout and the deadline bound it.
HELD_TESTS = f"""import os
import time

import calc

_deadline = time.monotonic() + 60
while not os.path.exists("{RELEASE}") and time.monotonic() < _deadline:
    time.sleep(0.05)


def test_add():
    assert calc.add(2, 3) == 5
"""


@pytest.fixture
def crash_queue(ai_config: Config) -> str:
    return f"{ai_config.task_queue}-crash-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def crash_http(
    ai_config: Config, crash_queue: str, docker_worker: None
) -> AsyncIterator[httpx.AsyncClient]:
    """An API server that starts AI workflows on the crash queue (containers as usual, on the
    session's Docker queue and in-process Docker worker)."""
    async with (
        serving(replace(ai_config, task_queue=crash_queue)) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=60) as client,
    ):
        yield client


@pytest.fixture
def workers(ai_config: Config, crash_queue: str, tmp_path: Path) -> Iterator[WorkerProcesses]:
    data_dir = data_dir_sharing_blobs(tmp_path, ai_config)
    found = WorkerProcesses(worker_env(ai_config, crash_queue, data_dir), tmp_path)
    yield found
    found.stop_all()


async def test_killed_worker_neither_loses_the_job_nor_asks_the_model_twice(
    crash_http: httpx.AsyncClient,
    workers: WorkerProcesses,
    fake_reset: FakeAnthropic,
    temporal_client: Client,
    docker_client: docker.DockerClient,
    crash_queue: str,
) -> None:
    http = crash_http
    owner = await register(http, "owner")
    pid = (await create_project(http, owner))["id"]
    # Content of its own: no cached answer from another test can stand in for the model call.
    await put_file(http, owner, pid, "calc.py", CALC + f"# {uuid.uuid4().hex}\n")
    fake_reset.push(Reply(text=answer({"code": HELD_TESTS})))
    first = workers.start()
    started = time.perf_counter()
    job_id = await start_job(http, owner, pid, "tests", {"path": "calc.py"})
    handle = temporal_client.get_workflow_handle(ai_workflow_id(Kind.TESTS, job_id))
    try:

        async def model_called() -> bool:
            assert first.poll() is None, "the first worker exited\n" + workers.logs()
            return len(fake_reset.log) >= 1

        await wait_until(model_called, timeout=90, what="the first worker's model call")

        async def held_in_the_generated_tests() -> bool:
            return "ai_ask" in await completed_activities(handle) and (
                await pending_activities(handle) == ["docker_exec"]
            )

        await wait_until(
            held_in_the_generated_tests,
            timeout=30,
            what="the model step to complete and the generated tests' run to be pending",
        )
        # While a worker runs the job, the REST answer carries the workflow's live progress.
        live = await http.get(f"/api/v1/projects/{pid}/ai/jobs/{job_id}", headers=owner.headers)
        assert live.json()["status"] == "running", live.text
        assert live.json()["progress"]["model_calls"] == 1, live.text
        workers.kill(first)
        killed_at = time.perf_counter()
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        # With no worker the progress query cannot be answered; the job row still is, at once.
        asked = time.perf_counter()
        orphan = await http.get(f"/api/v1/projects/{pid}/ai/jobs/{job_id}", headers=owner.headers)
        assert orphan.json()["status"] == "running", orphan.text
        assert time.perf_counter() - asked < 10, "GET job must not wait out the query timeout"

        second = workers.start()
        [container] = await asyncio.to_thread(project_containers, docker_client, pid)
        released = await asyncio.to_thread(container.exec_run, ["touch", RELEASE])
        assert released.exit_code == 0, released.output

        job = await finished(http, owner, pid, job_id, timeout=120)
        print(
            f"\ntest generation job with a SIGKILLed worker: {time.perf_counter() - started:.1f} s"
            f", finished {time.perf_counter() - killed_at:.1f} s after the kill"
        )
        assert job["status"] == "succeeded", (job, workers.logs())
        # The step that finished before the kill was not run again: one request reached the
        # model, the workflow scheduled `ai_ask` once (a re-run answered from the cache would
        # show here), and one model call is metered and reported.
        assert len(fake_reset.log) == 1
        assert (await scheduled_activities(handle)).count("ai_ask") == 1
        assert job["usage"]["calls"] == 1
        assert job["result"]["model_calls"] == 1
        assert job["result"]["kept"] == 1, job["result"]
        assert job["result"]["final_run_ok"] is True
        # Both processes worked on the job, and the new one finished it.
        identities = await workflow_task_identities(handle)
        assert any(i.startswith(f"{first.pid}@") for i in identities), identities
        assert identities[-1].startswith(f"{second.pid}@"), identities
    finally:
        with contextlib.suppress(Exception):
            await handle.terminate("test over")
        await stop_project_container(temporal_client, docker_client, pid)
        await drop_schedules_on(temporal_client, crash_queue)
