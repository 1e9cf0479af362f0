"""AI jobs: start (202 + job id), read, apply, usage. The work runs in Temporal workflows.

Editors start and apply jobs; viewers read them; non-members get 404. Before a job starts,
the project's and the caller's spend so far are checked against the configured budgets.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint
from quart_schema import document_response, validate_request
from temporalio.service import RPCError

from files.errors import WorkspaceConflict, checked_path
from store import ai as store
from store import ai_budget
from store.ai import Job
from store.projects import Project
from vaporform.container_client import configured_image
from web import audit
from web.access import caller_project, parse_uuid, project_for
from web.ai_results import job_body, proposed_changes
from web.auth import principal, require_auth
from web.errors import APIError, not_found
from web.openapi import document_errors
from web.services import services
from workflows.ai.contract import (
    ContainerTarget,
    DebugInput,
    GenerateInput,
    JobRef,
    JobStatus,
    Kind,
    ReviewInput,
    TestGenInput,
    ai_workflow_id,
)
from workflows.ai.debug import DebugWorkflow
from workflows.ai.generate import CodeGenerationWorkflow
from workflows.ai.review import CodeReviewWorkflow
from workflows.ai.tests import TestGenerationWorkflow
from workflows.shared import search_attributes

log = logging.getLogger("vaporform.web")

blueprint = Blueprint("ai", __name__, url_prefix="/api/v1/projects")

WORKFLOWS: dict[str, Any] = {
    Kind.REVIEW: CodeReviewWorkflow,
    Kind.TESTS: TestGenerationWorkflow,
    Kind.DEBUG: DebugWorkflow,
    Kind.GENERATE: CodeGenerationWorkflow,
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


Path = Field(min_length=1, max_length=1024)


class ReviewIn(Strict):
    paths: list[str] | None = Field(default=None, max_length=200)


class TestsIn(Strict):
    path: str = Path


class DebugIn(Strict):
    command: list[str] | None = Field(default=None, min_length=1, max_length=256)
    error: str | None = Field(default=None, max_length=100_000)
    paths: list[str] = Field(default_factory=list, max_length=200)


class GenerateIn(Strict):
    prompt: str = Field(min_length=1, max_length=20_000)
    paths: list[str] = Field(default_factory=list, max_length=200)


class JobCreated(BaseModel):
    job_id: str


class UsageOut(BaseModel):
    calls: int
    cached_calls: int
    input_tokens: int
    output_tokens: int
    cache_creation_tokens: int
    cache_read_tokens: int
    cost_usd: float


class JobOut(BaseModel):
    job_id: str
    kind: str
    status: str
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    usage: UsageOut
    progress: dict[str, Any] | None = None
    created_at: str
    updated_at: str
    applied_at: str | None = None


class AppliedFile(BaseModel):
    path: str
    version: int


class AppliedOut(BaseModel):
    files: list[AppliedFile]


def _paths(raw: list[str] | None) -> list[str] | None:
    return None if raw is None else [checked_path(p) for p in raw]


def _container_target(project: Project) -> ContainerTarget:
    settings = services().config.containers
    return ContainerTarget(
        docker_queue=settings.docker_queue,
        image=configured_image(project.config, settings.default_image),
        idle_timeout_s=settings.idle_timeout_s,
        health_timeout_s=float(settings.health_timeout_s),
    )


async def _check_budgets(project: Project, user_id: uuid.UUID) -> None:
    """Refuse early what cannot run. The exact check is the worker's: each model call
    reserves its worst-case cost first (store/ai_budget.py), so parallel jobs cannot overshoot."""
    ai = services().config.ai
    budgets = ai_budget.Budgets(ai.budget_project_usd, ai.budget_user_usd)
    async with services().pool.acquire() as conn:
        refused = await ai_budget.over_budget(conn, project.id, user_id, budgets)
    if refused is not None:
        raise APIError(
            402,
            "budget_exceeded",
            refused.message() + "; no new AI jobs until it is raised",
            details=refused.details(),
        )


async def _start(
    raw_project_id: str, kind: str, make_input: Any, public_input: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    project, caller = await caller_project(raw_project_id, need="editor")
    found = services()
    await _check_budgets(project, caller.user_id)
    job_id = str(uuid.uuid4())
    workflow_id = ai_workflow_id(kind, job_id)
    ref = JobRef(job_id=job_id, project_id=str(project.id), user_id=str(caller.user_id), kind=kind)
    async with found.pool.acquire() as conn:
        await store.create_job(
            conn,
            job_id=uuid.UUID(job_id),
            project_id=project.id,
            user_id=caller.user_id,
            kind=kind,
            input=public_input,
            workflow_id=workflow_id,
        )
    try:
        await found.temporal.start_workflow(
            WORKFLOWS[kind].run,
            make_input(ref, project),
            id=workflow_id,
            task_queue=found.config.task_queue,
            search_attributes=search_attributes(str(project.id), str(caller.user_id)),
        )
    except RPCError as exc:
        # Nothing will ever run it: do not leave a queued job behind.
        async with found.pool.acquire() as conn:
            await store.delete_job(conn, uuid.UUID(job_id))
        raise APIError(
            503, "workflow_unavailable", "the workflow service is unavailable, retry later"
        ) from exc
    await audit.record_after(
        "ai.job_started",
        actor_id=caller.user_id,
        project_id=project.id,
        target=job_id,
        details={"kind": kind},
    )
    return {"job_id": job_id}, 202


START_ERRORS: tuple[tuple[int, str], ...] = (
    (400, "`invalid_path`"),
    (402, "`budget_exceeded` (`details`): the project's or the caller's AI budget is spent"),
    (403, "`forbidden`: needs the editor role"),
    (503, "`workflow_unavailable`: retry later"),
)


@blueprint.post("/<project_id>/ai/reviews")
@require_auth
@validate_request(ReviewIn)
@document_response(JobCreated, 202)
@document_errors(*START_ERRORS)
async def start_review(project_id: str, data: ReviewIn) -> tuple[dict[str, Any], int]:
    """Review files (all text files within the context budget when `paths` is left out)."""
    paths = _paths(data.paths)
    tokens = services().config.ai.context_tokens
    return await _start(
        project_id,
        Kind.REVIEW,
        lambda ref, _project: ReviewInput(ref, paths, tokens),
        {"paths": paths},
    )


@blueprint.post("/<project_id>/ai/tests")
@require_auth
@validate_request(TestsIn)
@document_response(JobCreated, 202)
@document_errors(*START_ERRORS)
async def start_tests(project_id: str, data: TestsIn) -> tuple[dict[str, Any], int]:
    """Generate tests for one Python file, checked in the project's container."""
    path = checked_path(data.path)
    ai = services().config.ai
    return await _start(
        project_id,
        Kind.TESTS,
        lambda ref, project: TestGenInput(
            ref,
            path,
            _container_target(project),
            ai.context_tokens,
            rounds=ai.test_rounds,
            runs=max(1, ai.test_runs),
        ),
        {"path": path},
    )


@blueprint.post("/<project_id>/ai/debug")
@require_auth
@validate_request(DebugIn)
@document_response(JobCreated, 202)
@document_errors(*START_ERRORS, (400, "`validation_error`: neither command nor error"))
async def start_debug(project_id: str, data: DebugIn) -> tuple[dict[str, Any], int]:
    """Run `command` in the container (or take `error`) and propose a fix."""
    if not data.command and not data.error:
        raise APIError(400, "validation_error", "give a command to run or an error to explain")
    paths = _paths(data.paths) or []
    tokens = services().config.ai.context_tokens
    return await _start(
        project_id,
        Kind.DEBUG,
        lambda ref, project: DebugInput(
            ref,
            command=data.command,
            error=data.error,
            paths=paths,
            container=_container_target(project) if data.command else None,
            context_tokens=tokens,
        ),
        {"command": data.command, "error": data.error, "paths": paths},
    )


@blueprint.post("/<project_id>/ai/generate")
@require_auth
@validate_request(GenerateIn)
@document_response(JobCreated, 202)
@document_errors(*START_ERRORS)
async def start_generate(project_id: str, data: GenerateIn) -> tuple[dict[str, Any], int]:
    """Propose changes for `prompt`, with `paths` as context."""
    paths = _paths(data.paths) or []
    tokens = services().config.ai.context_tokens
    return await _start(
        project_id,
        Kind.GENERATE,
        lambda ref, _project: GenerateInput(ref, data.prompt, paths, tokens),
        {"prompt": data.prompt, "paths": paths},
    )


async def _job(raw_project_id: str, raw_job_id: str, need: str) -> tuple[Project, Job]:
    caller = await principal()
    async with services().pool.acquire() as conn:
        project = await project_for(conn, raw_project_id, caller.user_id, need=need)
        job = await store.get_job(conn, project.id, parse_uuid(raw_job_id, "job"))
    if job is None:
        raise not_found("job")
    return project, job


@blueprint.get("/<project_id>/ai/jobs/<job_id>")
@require_auth
@document_response(JobOut)
async def get_job(project_id: str, job_id: str) -> dict[str, Any]:
    _, job = await _job(project_id, job_id, "viewer")
    return await job_body(job)


@blueprint.post("/<project_id>/ai/jobs/<job_id>/apply")
@require_auth
@document_response(AppliedOut)
@document_errors(
    (403, "`forbidden`: needs the editor role"),
    (
        409,
        "`job_not_finished`; `nothing_to_apply`; `already_applied`; `version_conflict`: a "
        "file changed since the job read it; `workspace_conflict` (the versions were saved)",
    ),
)
async def apply_job(project_id: str, job_id: str) -> dict[str, Any]:
    """Write the job's proposed changes as new versions by the author `ai`, all or none.

    Each change carries the version it was made against: a file edited since answers 409
    `version_conflict` and nothing is written. Open documents pick the new version up as an op
    (the collaboration rooms absorb file changes).
    """
    caller = await principal()
    project, job = await _job(project_id, job_id, "editor")
    if job.status != JobStatus.SUCCEEDED:
        raise APIError(
            409, "job_not_finished", f"the job is {job.status}", details={"status": job.status}
        )
    changes = proposed_changes(job)
    if not changes:
        raise APIError(409, "nothing_to_apply", "the job proposes no file changes")
    if job.applied_at is not None:
        raise APIError(409, "already_applied", "the job's changes were applied before")
    found = services()
    refused: WorkspaceConflict | None = None
    try:
        written = await found.files.write_many(
            project.id,
            [(c.path, c.content.encode()) for c in changes],
            author_id=caller.user_id,
            author_kind="ai",
            message=f"AI {job.kind} job {job.id}",
            base_versions={c.path: c.base_version for c in changes},
            # Recorded with the versions, in their transaction.
            audit=audit.entry(
                "ai.applied",
                actor_id=caller.user_id,
                project_id=project.id,
                target=str(job.id),
                details={"kind": job.kind},
            ),
        )
    except WorkspaceConflict as exc:
        # The versions are committed: the job is applied, the workspace copy is what failed.
        written, refused = exc.results, exc
    files = [{"path": w.path, "version": w.version} for w in written]
    async with found.pool.acquire() as conn:
        if not await store.mark_applied(conn, job.id, files):
            # Two applies raced: the files were identical, so the second wrote nothing new.
            log.info("job applied twice at once", extra={"job_id": str(job.id)})
    if refused is not None:
        raise refused
    return {"files": files}


@blueprint.get("/<project_id>/ai/usage")
@require_auth
@document_response(UsageOut)
async def get_usage(project_id: str) -> dict[str, Any]:
    """Model calls, tokens and cost of the project's AI jobs (cache hits cost nothing)."""
    caller = await principal()
    async with services().pool.acquire() as conn:
        project = await project_for(conn, project_id, caller.user_id)
        usage = await store.usage_for_project(conn, project.id)
    return usage.public()
