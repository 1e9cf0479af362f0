"""What tests/ai/test_crash.py needs around a real worker process: starting and SIGKILLing
`python -m vaporform.cli worker`, its environment, reading a workflow's history, and removing
what the processes leave behind in the shared Temporal server and Docker engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import docker
import docker.errors
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, ScheduleActionStartWorkflow, WorkflowHandle

from vaporform.config import Config
from workflows.containers.contract import StopInput
from workflows.containers.entity import ContainerWorkflow
from workflows.containers.names import LABEL_PROJECT, container_workflow_id
from workflows.files.contract import RETENTION_SCHEDULE_ID


def worker_env(config: Config, task_queue: str, data_dir: Path) -> dict[str, str]:
    """The environment of a worker process serving `task_queue` with `config`'s database,
    Temporal server and AI provider.

    The process gets no Docker engine (DOCKER_HOST names a socket that does not exist): the
    project containers and `docker_exec` stay with the test's in-process Docker worker, as a
    Docker host's worker would in production, so killing this process cannot cut a command.
    No Redis either: job events are not what this process is tested for.
    """
    ai = config.ai
    assert ai.api_key is not None
    assert ai.base_url is not None
    env = {
        **os.environ,
        "DATABASE_URL": config.database_url,
        "TEMPORAL_ADDRESS": config.temporal_address,
        "VAPORFORM_TASK_QUEUE": task_queue,
        "VAPORFORM_DOCKER_QUEUE": f"{task_queue}-no-docker",
        "DOCKER_HOST": f"unix://{data_dir}/no-docker.sock",
        "VAPORFORM_DATA_DIR": str(data_dir),
        "VAPORFORM_JWT_SECRET": "crash-test-secret-" + task_queue * 2,
        "ANTHROPIC_API_KEY": ai.api_key,
        "ANTHROPIC_BASE_URL": ai.base_url,
        "VAPORFORM_AI_MODEL": ai.model,
        "VAPORFORM_AI_TIMEOUT_S": str(ai.request_timeout_s),
        "VAPORFORM_DB_POOL_MIN": "1",
        "VAPORFORM_DB_POOL_MAX": "5",
        "VAPORFORM_LOG_LEVEL": "WARNING",
    }
    env.pop("REDIS_URL", None)
    return env


def data_dir_sharing_blobs(tmp_path: Path, config: Config) -> Path:
    """A data directory of the worker's own whose blob store is `config`'s.

    File contents live in `<data dir>/blobs`, so the worker must read the API's blobs; but its
    workspace watcher scans every workspace under its data directory at start, and on the
    session's directory it would send every test project's workspace to a versioning workflow
    on this test's task queue, left without a worker afterwards.
    """
    shared = config.data_dir / "blobs"
    shared.mkdir(parents=True, exist_ok=True)
    own = tmp_path / "data"
    own.mkdir()
    (own / "blobs").symlink_to(shared.resolve(), target_is_directory=True)
    return own


# --- workflow history -------------------------------------------------------------------


async def scheduled_activities(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """Activity type names in the order the workflow scheduled them."""
    history = await handle.fetch_history()
    return [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def completed_activities(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """Activity type names in the order their completions were recorded."""
    history = await handle.fetch_history()
    names: dict[int, str] = {}
    done: list[str] = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            names[event.event_id] = (
                event.activity_task_scheduled_event_attributes.activity_type.name
            )
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            done.append(names[event.activity_task_completed_event_attributes.scheduled_event_id])
    return done


async def pending_activities(handle: WorkflowHandle[Any, Any]) -> list[str]:
    description = await handle.describe()
    return [a.activity_type.name for a in description.raw_description.pending_activities]


async def workflow_task_identities(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """Which worker completed each workflow task, in order (`<pid>@<host>` by default)."""
    history = await handle.fetch_history()
    return [
        event.workflow_task_completed_event_attributes.identity
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    ]


# --- cleanup ----------------------------------------------------------------------------


async def stop_project_container(
    client: Client, docker_client: docker.DockerClient, project_id: str
) -> None:
    """Stop the project's container through its workflow (a worker must still serve its task
    queue), then make sure: terminate the workflow and remove any container left."""
    handle = client.get_workflow_handle_for(
        ContainerWorkflow.run, container_workflow_id(project_id)
    )
    with contextlib.suppress(Exception):
        await handle.execute_update(
            ContainerWorkflow.stop,
            StopInput("crash-test", "test over"),
            rpc_timeout=timedelta(seconds=30),
        )
    with contextlib.suppress(Exception):
        await handle.terminate("test over")
    await asyncio.to_thread(remove_project_containers, docker_client, project_id)


def project_containers(docker_client: docker.DockerClient, project_id: str) -> list[Any]:
    return list(
        docker_client.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={project_id}"})
    )


def remove_project_containers(docker_client: docker.DockerClient, project_id: str) -> None:
    for container in project_containers(docker_client, project_id):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


async def drop_schedules_on(client: Client, task_queue: str) -> None:
    """A worker process creates the retention schedule if no one has yet, on its own task
    queue; once that queue has no worker, the schedule must not outlive the test."""
    handle = client.get_schedule_handle(RETENTION_SCHEDULE_ID)
    with contextlib.suppress(Exception):
        action = (await handle.describe()).schedule.action
        if isinstance(action, ScheduleActionStartWorkflow) and action.task_queue == task_queue:
            await handle.delete()
