"""SIGKILL a real worker process (`python -m vaporform.cli worker`) in the middle of
provisioning: a new worker finishes it, and exactly one container exists for the project.

The worker processes get a task queue, a Docker queue and a data directory of their own, so
the in-process workers of the other tests never pick up their work.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateStage
from temporalio.common import WorkflowIDConflictPolicy

from tests.support import wait_until
from tests.worker_processes import WorkerProcesses
from vaporform.config import Config
from vaporform.temporal_setup import reconcile_schedule_id
from workflows.containers.contract import (
    ContainerSpec,
    ContainerWorkflowInput,
    EnsureRunningInput,
    Resources,
    StopInput,
)
from workflows.containers.entity import ContainerWorkflow
from workflows.containers.names import LABEL_PROJECT, container_name, container_workflow_id


@pytest.fixture
def workers(
    container_config: Config, runtime_image: str, tmp_path: Path
) -> Iterator[WorkerProcesses]:
    run = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "DATABASE_URL": container_config.database_url,
        "TEMPORAL_ADDRESS": container_config.temporal_address,
        "VAPORFORM_TASK_QUEUE": f"crash-{run}",
        "VAPORFORM_DOCKER_QUEUE": f"crash-docker-{run}",
        "VAPORFORM_DATA_DIR": str(tmp_path / "data"),
        "VAPORFORM_JWT_SECRET": "crash-test-secret-" + run * 4,
        "VAPORFORM_CONTAINER_IMAGE": runtime_image,
        "VAPORFORM_POOL_SIZE": "0",  # provisioning is the cold path, the one that can be cut
        "VAPORFORM_LOG_LEVEL": "WARNING",
    }
    env.pop("REDIS_URL", None)
    found = WorkerProcesses(env, tmp_path)
    yield found
    found.stop_all()


async def test_sigkilled_worker_mid_provisioning_leaves_one_container(
    workers: WorkerProcesses,
    temporal_client: Client,
    docker_client: docker.DockerClient,
    runtime_image: str,
) -> None:
    env = workers.env
    pid = str(uuid.uuid4())
    workflow_id = container_workflow_id(pid)
    first = workers.start()
    # Accepted means the first worker runs the workflow; the update completes only when the
    # container is healthy.
    update = await asyncio.wait_for(
        temporal_client.start_update_with_start_workflow(
            ContainerWorkflow.ensure_running,
            EnsureRunningInput(
                ContainerSpec(image=runtime_image, resources=Resources(0.5, 64, 64)), "crash"
            ),
            start_workflow_operation=WithStartWorkflowOperation(
                ContainerWorkflow.run,
                ContainerWorkflowInput(
                    project_id=pid,
                    user_id="crash",
                    docker_queue=env["VAPORFORM_DOCKER_QUEUE"],
                    health_timeout_s=10,
                ),
                id=workflow_id,
                task_queue=env["VAPORFORM_TASK_QUEUE"],
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            ),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        ),
        timeout=60,
    )
    outcome = asyncio.create_task(update.result())

    def project_containers() -> list[Any]:
        return list(
            docker_client.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={pid}"})
        )

    def any_created() -> bool:
        # Sparse: a plain list inspects each container after listing it, and fails when one
        # goes away in between (a create the workflow compensates).
        labels: dict[str, Any] = {"label": f"{LABEL_PROJECT}={pid}"}
        return bool(docker_client.containers.list(all=True, sparse=True, filters=labels))

    async def created() -> bool:
        return await asyncio.to_thread(any_created)

    try:
        await wait_until(created, timeout=30, what="the first worker to create the container")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert not outcome.done(), "provisioning finished before the worker was killed"

        # How long the recovery takes is bench/container_bench.py's crash phase.
        workers.start()
        status = await asyncio.wait_for(outcome, timeout=60)

        assert status.status == "running", status
        found = project_containers()
        assert [c.id for c in found] == [status.container_id]
        assert found[0].name == container_name(pid)
        assert found[0].status == "running"

        handle = temporal_client.get_workflow_handle_for(ContainerWorkflow.run, workflow_id)
        stopped = await handle.execute_update(ContainerWorkflow.stop, StopInput("crash"))
        assert stopped.status == "stopped"
        assert project_containers() == []
    finally:
        outcome.cancel()
        with contextlib.suppress(Exception):
            await temporal_client.get_schedule_handle(
                reconcile_schedule_id(env["VAPORFORM_DOCKER_QUEUE"])
            ).delete()
