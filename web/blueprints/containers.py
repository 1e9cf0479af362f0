"""A project's container: start, status, stop, restart, touch and exec; the runtime images.

The API holds no Docker client for any of these: it reaches the project's `ContainerWorkflow`
through the container client (vaporform/container_client.py, the app's one at
`services().containers`) and runs short workflows whose one activity runs on the Docker host.
Only the terminal (web/terminal.py) streams, from the agent of the Docker host.
"""

from __future__ import annotations

import uuid
from typing import Any

from quart import Blueprint
from quart_schema import document_response, validate_request
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.service import RPCError

from store import quotas
from web import audit
from web.access import caller_project
from web.auth import require_auth
from web.blueprints.container_schema import (
    ContainerIn,
    ContainerOut,
    ExecIn,
    ExecOut,
    ImageList,
    public,
    requested_spec,
)
from web.containers_edge import as_api_errors, containers, current_status, touch, unavailable
from web.errors import APIError
from web.openapi import document_errors, document_no_content
from web.services import services
from workflows.containers.contract import (
    ExecInput,
    ExecWorkflowInput,
    ListImagesWorkflowInput,
)
from workflows.containers.names import CONTAINER_GONE, Status
from workflows.containers.ops import ExecWorkflow, ListImagesWorkflow
from workflows.shared import search_attributes

blueprint = Blueprint("containers", __name__, url_prefix="/api/v1/projects")
images_blueprint = Blueprint("images", __name__, url_prefix="/api/v1/images")

UNAVAILABLE = (503, "`workflow_unavailable`: retry later")
EDITOR = (403, "`forbidden`: needs the editor role")


async def _check_running_quota(project_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """A user with a `containers_running` quota (store/quotas.py) may hold that many running
    containers: the project workflows they started that still run. Starting one that runs
    already adds none. Counted in Temporal's visibility store, which can trail by a moment,
    so two starts at the same instant may both pass."""
    async with services().pool.acquire() as conn:
        limit = (await quotas.get(conn, user_id)).containers_running
    if limit is None:
        return
    if (await current_status(project_id)).status in (Status.PROVISIONING, Status.RUNNING):
        return
    with as_api_errors():
        running = await containers().running_count(user_id)
    if running >= limit:
        raise APIError(
            400,
            "quota_exceeded",
            f"you run {running} container(s); your limit is {limit}",
            details={"limit": "containers_running", "requested": running + 1, "maximum": limit},
        )


@blueprint.post("/<project_id>/container")
@require_auth
@validate_request(ContainerIn)
@document_response(ContainerOut, 202)
@document_errors(
    (
        400,
        "`quota_exceeded` (`details: {limit, requested, maximum}`); `invalid_image`; "
        "`invalid_ports`; `ports_need_network`",
    ),
    EDITOR,
    UNAVAILABLE,
)
async def start_container(project_id: str, data: ContainerIn) -> tuple[dict[str, Any], int]:
    """Ensure the project's container runs; answers once it runs (or failed, with the reason)."""
    project, caller = await caller_project(project_id, need="editor")
    role = caller.claims.role if caller.claims else "user"
    spec = requested_spec(data, project.config, role, services().config.containers)
    await _check_running_quota(project.id, caller.user_id)
    with as_api_errors():
        status = await containers().ensure(str(project.id), str(caller.user_id), spec)
    await audit.record_after(
        "container.started",
        actor_id=caller.user_id,
        project_id=project.id,
        target=status.workflow_id,
        outcome="failure" if status.status == Status.FAILED else "success",
        details={"image": spec.image, "status": status.status, "error": status.error},
    )
    return public(status), 202


@blueprint.get("/<project_id>/container")
@require_auth
@document_response(ContainerOut)
@document_errors(UNAVAILABLE)
async def get_container(project_id: str) -> dict[str, Any]:
    project, _ = await caller_project(project_id)
    return public(await current_status(project.id))


@blueprint.post("/<project_id>/container/stop")
@require_auth
@document_response(ContainerOut, 202)
@document_errors(EDITOR, UNAVAILABLE)
async def stop_container(project_id: str) -> tuple[dict[str, Any], int]:
    project, caller = await caller_project(project_id, need="editor")
    with as_api_errors():
        status = await containers().stop(str(project.id), str(caller.user_id))
    await audit.record_after(
        "container.stopped",
        actor_id=caller.user_id,
        project_id=project.id,
        target=status.workflow_id,
        details={"status": status.status},
    )
    return public(status), 202


@blueprint.post("/<project_id>/container/restart")
@require_auth
@document_response(ContainerOut, 202)
@document_errors(EDITOR, (409, "`container_not_running`"), UNAVAILABLE)
async def restart_container(project_id: str) -> tuple[dict[str, Any], int]:
    project, caller = await caller_project(project_id, need="editor")
    with as_api_errors():
        status = await containers().restart(str(project.id), str(caller.user_id))
    if status is None:
        raise APIError(409, "container_not_running", "start the container first")
    await audit.record_after(
        "container.restarted",
        actor_id=caller.user_id,
        project_id=project.id,
        target=status.workflow_id,
        details={"status": status.status},
    )
    return public(status), 202


@blueprint.post("/<project_id>/container/touch")
@require_auth
@document_no_content("The idle deadline moved")
@document_errors(EDITOR, UNAVAILABLE)
async def touch_container(project_id: str) -> tuple[str, int]:
    """Activity from the IDE: push the idle deadline back."""
    project, caller = await caller_project(project_id, need="editor")
    await touch(project.id, str(caller.user_id))
    return "", 204


@blueprint.post("/<project_id>/container/exec")
@require_auth
@validate_request(ExecIn)
@document_response(ExecOut)
@document_errors(
    (400, "`quota_exceeded` (timeout_s); `invalid_command`"),
    EDITOR,
    (409, "`container_not_running`"),
    (502, "`exec_failed`"),
    UNAVAILABLE,
)
async def exec_command(project_id: str, data: ExecIn) -> dict[str, Any]:
    """Run a command (no shell unless you call one) as the container's user, in /workspace."""
    project, caller = await caller_project(project_id, need="editor")
    found = services()
    settings = found.config.containers
    if data.timeout_s > settings.exec_max_timeout_s:
        raise APIError(
            400,
            "quota_exceeded",
            f"timeout_s is over the limit of {settings.exec_max_timeout_s}",
            details={
                "limit": "timeout_s",
                "requested": data.timeout_s,
                "maximum": settings.exec_max_timeout_s,
            },
        )
    if any(len(arg) > 64 * 1024 or "\x00" in arg for arg in data.command):
        raise APIError(400, "invalid_command", "arguments must be under 64 KiB, without NUL")
    status = await current_status(project.id)
    if status.status != Status.RUNNING or not status.container_id or not status.docker_queue:
        raise APIError(
            409,
            "container_not_running",
            "the container is not running; start it first",
            details={"status": status.status},
        )
    await touch(project.id, str(caller.user_id))
    try:
        result = await found.temporal.execute_workflow(
            ExecWorkflow.run,
            ExecWorkflowInput(
                project_id=str(project.id),
                docker_queue=status.docker_queue,
                exec=ExecInput(
                    container_id=status.container_id,
                    command=data.command,
                    timeout_s=data.timeout_s,
                    output_cap_bytes=settings.exec_output_cap_bytes,
                ),
            ),
            id=f"container-exec-{project.id}-{uuid.uuid4().hex[:12]}",
            task_queue=found.config.task_queue,
            search_attributes=search_attributes(str(project.id), str(caller.user_id)),
        )
    except WorkflowFailureError as exc:
        cause: BaseException | None = exc.cause
        while isinstance(cause, FailureError) and not isinstance(cause, ApplicationError):
            cause = cause.cause
        if isinstance(cause, ApplicationError) and cause.type == CONTAINER_GONE:
            raise APIError(409, "container_not_running", cause.message) from exc
        raise APIError(502, "exec_failed", "the command could not be run") from exc
    except RPCError as exc:
        raise unavailable(exc) from exc
    await audit.record_after(
        "container.exec",
        actor_id=caller.user_id,
        project_id=project.id,
        target=status.container_id,
        # The command as run, within reason: an argument may be 64 KiB.
        details={
            "command": [arg[:256] for arg in data.command[:32]],
            "exit_code": result.exit_code,
        },
    )
    return {
        "exit_code": result.exit_code,
        "stdout": result.stdout,
        "stderr": result.stderr,
        "duration_ms": result.duration_ms,
        "truncated": result.truncated,
        "timed_out": result.timed_out,
    }


@images_blueprint.get("")
@require_auth
@document_response(ImageList)
@document_errors(UNAVAILABLE)
async def list_images() -> dict[str, Any]:
    """The runtime images on the Docker host, as `vaporform images build` made them."""
    found = services()
    try:
        listed = await found.temporal.execute_workflow(
            ListImagesWorkflow.run,
            ListImagesWorkflowInput(docker_queue=found.config.containers.docker_queue),
            id=f"list-images-{uuid.uuid4().hex}",
            task_queue=found.config.task_queue,
        )
    except (RPCError, WorkflowFailureError) as exc:
        raise unavailable(exc) from exc
    return {
        "items": [
            {"name": i.name, "description": i.description, "size": i.size} for i in listed.items
        ]
    }
