"""A project's container: start, status, stop, restart, touch and exec; the runtime images.

The API holds no Docker client for any of these: it talks to the project's
`ContainerWorkflow` (update-with-start, updates, a query) and runs short workflows whose one
activity runs on the Docker host. Only the terminal (web/terminal.py) streams from Docker.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint
from quart_schema import document_response, validate_request
from temporalio.client import (
    WithStartWorkflowOperation,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.service import RPCError, RPCStatusCode

from store import quotas
from vaporform.config import ContainerSettings, Quota
from vaporform.temporal_setup import configured_pools
from web import audit
from web.access import caller_project
from web.auth import require_auth
from web.errors import APIError
from web.openapi import document_errors, document_no_content
from web.services import services
from workflows.containers.contract import (
    ContainerSpec,
    ContainerStatus,
    ContainerWorkflowInput,
    EnsureRunningInput,
    ExecInput,
    ExecWorkflowInput,
    ListImagesWorkflowInput,
    Resources,
    StopInput,
    TouchInput,
    pool_spec,
)
from workflows.containers.entity import ContainerWorkflow
from workflows.containers.names import (
    CONTAINER_GONE,
    Status,
    container_workflow_id,
    normalise_image,
    pool_workflow_id,
)
from workflows.containers.ops import ExecWorkflow, ListImagesWorkflow
from workflows.shared import search_attributes

blueprint = Blueprint("containers", __name__, url_prefix="/api/v1/projects")
images_blueprint = Blueprint("images", __name__, url_prefix="/api/v1/images")

T = TypeVar("T")

UNAVAILABLE = (503, "`workflow_unavailable`: retry later")
EDITOR = (403, "`forbidden`: needs the editor role")

IMAGE_NAME = re.compile(r"^vaporform/runtime-[a-z0-9][a-z0-9._-]{0,63}(:[A-Za-z0-9._-]{1,64})?$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ResourcesIn(Strict):
    cpus: float = Field(default=1.0, gt=0, le=64)
    memory_mb: int = Field(default=512, ge=16, le=1024 * 1024)
    pids: int = Field(default=256, ge=16, le=1_000_000)


class ContainerIn(Strict):
    image: str | None = Field(default=None, max_length=200)
    resources: ResourcesIn = Field(default_factory=ResourcesIn)
    ports: list[int] = Field(default_factory=list, max_length=64)
    network: str = Field(default="none", pattern=r"^(none|bridge)$")


class ContainerOut(BaseModel):
    status: str
    workflow_id: str
    container_id: str | None
    image: str | None
    ports: dict[str, int]
    resources: dict[str, Any] | None
    network: str | None
    started_at: str | None
    idle_deadline: str | None
    error: str | None


class ExecIn(Strict):
    command: list[str] = Field(min_length=1, max_length=256)
    timeout_s: float = Field(default=30.0, gt=0)


class ExecOut(BaseModel):
    exit_code: int
    stdout: str
    stderr: str
    duration_ms: int
    truncated: bool
    timed_out: bool


class ImageOut(BaseModel):
    name: str
    description: str
    size: int


class ImageList(BaseModel):
    items: list[ImageOut]


def _public(status: ContainerStatus) -> dict[str, Any]:
    resources = status.resources
    return {
        "status": status.status,
        "workflow_id": status.workflow_id,
        "container_id": status.container_id,
        "image": status.image,
        "ports": status.ports,
        "resources": None
        if resources is None
        else {"cpus": resources.cpus, "memory_mb": resources.memory_mb, "pids": resources.pids},
        "network": status.network,
        "started_at": status.started_at,
        "idle_deadline": status.idle_deadline,
        "error": status.error,
    }


def unavailable(exc: Exception) -> APIError:
    return APIError(503, "workflow_unavailable", "the workflow service is unavailable, retry later")


def _check_quota(data: ContainerIn, quota: Quota) -> None:
    asked = {
        "cpus": (data.resources.cpus, quota.cpus),
        "memory_mb": (data.resources.memory_mb, quota.memory_mb),
        "pids": (data.resources.pids, quota.pids),
        "ports": (len(data.ports), quota.ports),
    }
    for limit, (requested, maximum) in asked.items():
        if requested > maximum:
            raise APIError(
                400,
                "quota_exceeded",
                f"{limit} {requested} is over your limit of {maximum}",
                details={"limit": limit, "requested": requested, "maximum": maximum},
            )


def _spec(data: ContainerIn, project_config: dict[str, Any], role: str) -> ContainerSpec:
    settings = services().config.containers
    runtime = project_config.get("runtime")
    configured = runtime.get("image") if isinstance(runtime, dict) else None
    image = data.image or (configured if isinstance(configured, str) else None)
    image = normalise_image(image or settings.default_image)
    if not IMAGE_NAME.match(image):
        raise APIError(
            400,
            "invalid_image",
            "image must be one of the runtime images (GET /api/v1/images)",
            details={"image": image},
        )
    if any(not 1 <= p <= 65535 for p in data.ports) or len(set(data.ports)) != len(data.ports):
        raise APIError(400, "invalid_ports", "ports must be distinct integers in 1..65535")
    if data.ports and data.network != "bridge":
        raise APIError(400, "ports_need_network", 'publishing ports needs "network": "bridge"')
    _check_quota(data, settings.quotas.get(role, settings.quotas["user"]))
    return ContainerSpec(
        image=image,
        resources=Resources(
            cpus=data.resources.cpus,
            memory_mb=data.resources.memory_mb,
            pids=data.resources.pids,
        ),
        ports=sorted(data.ports),
        network=data.network,
    )


async def _check_running_quota(project_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """A user with a `containers_running` quota (store/quotas.py) may hold that many running
    containers: the project workflows they started that still run. Starting one that runs
    already adds none. Counted in Temporal's visibility store, which can trail by a moment,
    so two starts at the same instant may both pass."""
    found = services()
    async with found.pool.acquire() as conn:
        limit = (await quotas.get(conn, user_id)).containers_running
    if limit is None:
        return
    if (await current_status(project_id)).status in (Status.PROVISIONING, Status.RUNNING):
        return
    query = (
        f"WorkflowType = 'ContainerWorkflow' AND ExecutionStatus = 'Running' "
        f"AND UserId = '{user_id}'"
    )
    try:
        running = (await found.temporal.count_workflows(query)).count
    except RPCError as exc:
        raise unavailable(exc) from exc
    if running >= limit:
        raise APIError(
            400,
            "quota_exceeded",
            f"you run {running} container(s); your limit is {limit}",
            details={"limit": "containers_running", "requested": running + 1, "maximum": limit},
        )


def pool_for(spec: ContainerSpec, settings: ContainerSettings) -> str | None:
    """The warm pool that can serve `spec` on this API's Docker host, if one is configured."""
    pools = configured_pools(settings.default_image, settings.pool_size, settings.pool_images)
    if pools.get(spec.image, 0) > 0 and spec == pool_spec(spec.image):
        return pool_workflow_id(settings.docker_queue, spec.image)
    return None


async def _on_workflow(
    project_id: uuid.UUID,
    call: Callable[[WorkflowHandle[ContainerWorkflow, ContainerStatus]], Awaitable[T]],
) -> T | None:
    """`call` on the project's container workflow; None when it has none (never ran, or ended)."""
    workflow_id = container_workflow_id(str(project_id))
    handle = services().temporal.get_workflow_handle_for(ContainerWorkflow.run, workflow_id)
    try:
        return await call(handle)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise unavailable(exc) from exc
        return None


async def current_status(project_id: uuid.UUID) -> ContainerStatus:
    """What the project's workflow says; `stopped` when there has never been one."""
    found = await _on_workflow(project_id, lambda handle: handle.query(ContainerWorkflow.status))
    if found is None:
        return ContainerStatus(
            str(project_id), container_workflow_id(str(project_id)), Status.STOPPED
        )
    return found


def agent_url(status: ContainerStatus) -> str:
    """The agent that serves the container's terminals and previews: the one its workflow
    recorded, or (workflows started before agents were recorded) the one configured for its
    Docker queue."""
    return status.agent_url or services().config.agent.url_for(status.docker_queue)


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
    spec = _spec(data, project.config, role)
    await _check_running_quota(project.id, caller.user_id)
    found = services()
    pid, uid = str(project.id), str(caller.user_id)
    settings = found.config.containers
    workflow_id = container_workflow_id(pid)
    for attempt in range(2):
        operation = WithStartWorkflowOperation(
            ContainerWorkflow.run,
            ContainerWorkflowInput(
                project_id=pid,
                user_id=uid,
                docker_queue=settings.docker_queue,
                agent_url=found.config.agent.url_for(settings.docker_queue),
                idle_timeout_s=settings.idle_timeout_s,
                health_timeout_s=float(settings.health_timeout_s),
            ),
            id=workflow_id,
            task_queue=found.config.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=search_attributes(pid, uid),
        )
        try:
            status = await found.temporal.execute_update_with_start_workflow(
                ContainerWorkflow.ensure_running,
                EnsureRunningInput(spec=spec, requested_by=uid, pool_id=pool_for(spec, settings)),
                start_workflow_operation=operation,
            )
            await audit.record_after(
                "container.started",
                actor_id=caller.user_id,
                project_id=project.id,
                target=workflow_id,
                outcome="failure" if status.status == Status.FAILED else "success",
                details={"image": spec.image, "status": status.status, "error": status.error},
            )
            return _public(status), 202
        except RPCError as exc:
            # The workflow may complete (its container stopped) just as the update arrives:
            # the second attempt starts a fresh one.
            if attempt == 0 and exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.ABORTED):
                continue
            raise unavailable(exc) from exc
    raise AssertionError("unreachable")


@blueprint.get("/<project_id>/container")
@require_auth
@document_response(ContainerOut)
@document_errors(UNAVAILABLE)
async def get_container(project_id: str) -> dict[str, Any]:
    project, _ = await caller_project(project_id)
    return _public(await current_status(project.id))


@blueprint.post("/<project_id>/container/stop")
@require_auth
@document_response(ContainerOut, 202)
@document_errors(EDITOR, UNAVAILABLE)
async def stop_container(project_id: str) -> tuple[dict[str, Any], int]:
    project, caller = await caller_project(project_id, need="editor")
    stop = StopInput(requested_by=str(caller.user_id))
    status = await _on_workflow(
        project.id, lambda handle: handle.execute_update(ContainerWorkflow.stop, stop)
    )
    if status is None:  # no running workflow: nothing to stop
        status = await current_status(project.id)
    await audit.record_after(
        "container.stopped",
        actor_id=caller.user_id,
        project_id=project.id,
        target=status.workflow_id,
        details={"status": status.status},
    )
    return _public(status), 202


@blueprint.post("/<project_id>/container/restart")
@require_auth
@document_response(ContainerOut, 202)
@document_errors(EDITOR, (409, "`container_not_running`"), UNAVAILABLE)
async def restart_container(project_id: str) -> tuple[dict[str, Any], int]:
    project, caller = await caller_project(project_id, need="editor")
    restart = StopInput(requested_by=str(caller.user_id))
    try:
        status = await _on_workflow(
            project.id, lambda handle: handle.execute_update(ContainerWorkflow.restart, restart)
        )
    except WorkflowUpdateFailedError:  # never started: nothing to restart
        status = None
    if status is None:
        raise APIError(409, "container_not_running", "start the container first")
    await audit.record_after(
        "container.restarted",
        actor_id=caller.user_id,
        project_id=project.id,
        target=status.workflow_id,
        details={"status": status.status},
    )
    return _public(status), 202


@blueprint.post("/<project_id>/container/touch")
@require_auth
@document_no_content("The idle deadline moved")
@document_errors(EDITOR, UNAVAILABLE)
async def touch_container(project_id: str) -> tuple[str, int]:
    """Activity from the IDE: push the idle deadline back."""
    project, caller = await caller_project(project_id, need="editor")
    await touch(project.id, str(caller.user_id))
    return "", 204


async def touch(project_id: uuid.UUID, user_id: str) -> None:
    touched = TouchInput(requested_by=user_id)
    await _on_workflow(project_id, lambda handle: handle.signal(ContainerWorkflow.touch, touched))


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
