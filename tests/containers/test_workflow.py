"""The ContainerWorkflow's durability: compensation, reconciliation, vanished containers,
continue-as-new. Real Docker engine, real Temporal dev server."""

from __future__ import annotations

import uuid
from typing import Any

import docker
import docker.errors
import httpx
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy

from tests.support import create_project, register, wait_until
from vaporform.config import Config
from workflows.containers.contract import (
    ContainerSpec,
    ContainerWorkflowInput,
    EnsureRunningInput,
    Resources,
    StopInput,
    TouchInput,
)
from workflows.containers.contract.reconcile import ReconcileInput
from workflows.containers.entity import ContainerWorkflow
from workflows.containers.names import (
    LABEL_CREATED_BY,
    LABEL_MANAGED,
    LABEL_PROJECT,
    LABEL_WORKFLOW,
    container_workflow_id,
)
from workflows.containers.reconcile import ReconcileWorkflow

SMALL = Resources(cpus=0.5, memory_mb=64, pids=64)


def _project_containers(client: docker.DockerClient, pid: str) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={pid}"}))


async def test_failure_after_create_is_compensated(
    http: httpx.AsyncClient, docker_client: docker.DockerClient, broken_image: str
) -> None:
    owner = await register(http, "owner")
    pid = (await create_project(http, owner))["id"]
    base = f"/api/v1/projects/{pid}/container"

    answer = await http.post(base, json={"image": broken_image}, headers=owner.headers)
    assert answer.status_code == 202
    body = answer.json()
    assert body["status"] == "failed", body
    assert "cannot start" in body["error"] or "exited" in body["error"], body
    assert body["container_id"] is None
    # The container was created, then start failed: compensation removed it.
    assert _project_containers(docker_client, pid) == []
    status = (await http.get(base, headers=owner.headers)).json()
    assert status["status"] == "failed"
    assert status["error"] == body["error"]

    # A later good start works and replaces the failure.
    good = await http.post(base, json={"resources": {"memory_mb": 64}}, headers=owner.headers)
    assert good.json()["status"] == "running"
    assert good.json()["error"] is None
    assert len(_project_containers(docker_client, pid)) == 1
    await http.post(f"{base}/stop", headers=owner.headers)
    assert _project_containers(docker_client, pid) == []


def _orphan(client: docker.DockerClient, image: str) -> Any:
    pid = str(uuid.uuid4())
    return client.containers.create(
        image,
        command=["sleep", "infinity"],
        labels={
            LABEL_MANAGED: "true",
            LABEL_PROJECT: pid,
            LABEL_WORKFLOW: container_workflow_id(pid),  # no such workflow
            LABEL_CREATED_BY: "hand",
        },
        network_mode="none",
    )


async def test_reconciler_removes_orphans_and_reports_vanished(
    http: httpx.AsyncClient,
    docker_client: docker.DockerClient,
    temporal_client: Client,
    container_config: Config,
    runtime_image: str,
) -> None:
    orphan = _orphan(docker_client, runtime_image)
    orphan.start()

    owner = await register(http, "owner")
    pid = (await create_project(http, owner))["id"]
    base = f"/api/v1/projects/{pid}/container"
    first = (await http.post(base, json={}, headers=owner.headers)).json()
    assert first["status"] == "running"
    # The engine loses our container (as after an engine restart without it).
    docker_client.containers.get(first["container_id"]).remove(force=True)

    queue = container_config.containers.docker_queue
    result = await temporal_client.execute_workflow(
        ReconcileWorkflow.run,
        ReconcileInput(docker_queue=queue, grace_s=0),
        id=f"reconcile-test-{uuid.uuid4().hex[:8]}",
        task_queue=container_config.task_queue,
    )
    assert orphan.id in result.removed
    assert first["container_id"] not in result.removed  # it was already gone
    assert first["container_id"] in result.vanished
    try:
        docker_client.containers.get(orphan.id)
        raise AssertionError("the orphan is still there")
    except docker.errors.NotFound:
        pass

    async def reprovisioned() -> bool:
        status = (await http.get(base, headers=owner.headers)).json()
        return status["status"] == "running" and status["container_id"] not in (
            None,
            first["container_id"],
        )

    await wait_until(reprovisioned, timeout=20, what="the workflow to provision again")
    assert len(_project_containers(docker_client, pid)) == 1
    # The project's live container is no orphan: a second round leaves it alone.
    again = await temporal_client.execute_workflow(
        ReconcileWorkflow.run,
        ReconcileInput(docker_queue=queue, grace_s=0),
        id=f"reconcile-test-{uuid.uuid4().hex[:8]}",
        task_queue=container_config.task_queue,
    )
    assert again.removed == []
    assert again.vanished == []
    await http.post(f"{base}/stop", headers=owner.headers)


async def test_continue_as_new_keeps_the_container(
    temporal_client: Client,
    container_config: Config,
    runtime_image: str,
    docker_client: docker.DockerClient,
) -> None:
    pid = str(uuid.uuid4())
    workflow_id = container_workflow_id(pid)
    status = await temporal_client.execute_update_with_start_workflow(
        ContainerWorkflow.ensure_running,
        EnsureRunningInput(ContainerSpec(image=runtime_image, resources=SMALL), "tester"),
        start_workflow_operation=WithStartWorkflowOperation(
            ContainerWorkflow.run,
            ContainerWorkflowInput(
                project_id=pid,
                user_id="tester",
                docker_queue=container_config.containers.docker_queue,
                max_history_events=40,
            ),
            id=workflow_id,
            task_queue=container_config.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        ),
    )
    assert status.status == "running"
    assert status.container_id is not None
    handle = temporal_client.get_workflow_handle_for(ContainerWorkflow.run, workflow_id)
    first_run = (await handle.describe()).run_id
    for _ in range(30):
        await handle.signal(ContainerWorkflow.touch, TouchInput("tester"))

    async def continued() -> bool:
        return (await handle.describe()).run_id != first_run

    await wait_until(continued, timeout=20, what="continue-as-new")
    after = await handle.query(ContainerWorkflow.status)
    assert after.status == "running"
    assert after.container_id == status.container_id
    assert docker_client.containers.get(status.container_id).status == "running"
    stopped = await handle.execute_update(ContainerWorkflow.stop, StopInput("tester"))
    assert stopped.status == "stopped"
    final = await handle.result()
    assert final.status == "stopped"
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    assert _project_containers(docker_client, pid) == []
