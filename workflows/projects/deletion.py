"""`ProjectDeletion` (`project-deletion-<project_id>`): everything a deleted project leaves.

The API hides the project at once (`projects.deleted_at`: 404 everywhere) and records this
workflow in the outbox in the same transaction (store/outbox.py), so it always starts. Steps,
each idempotent and retried until it succeeds, in an order where a step never undoes a later
one:

1. the container entity workflow `container-<pid>` is stopped (its `stop` update removes the
   container); what it recorded says which Docker host (task queue) served the project;
2. on that host, the container is removed by name too (a leftover after a crash);
3. the project's other workflows end: `versioning-<pid>` and any still running with its
   `ProjectId` (AI jobs, a container workflow that did not stop);
4. every API node is told to re-check the project's open sockets (they close with 4003; the
   API announced it at the DELETE already, this is the backstop);
5. the project's row is removed, cascading to files, versions, chat and AI jobs: blobs that no
   version names any more are collected by the files-retention schedule (GC);
6. the workspace is removed on the Docker host that served it, then the worker's own copy.

Running it again (a second outbox item, a manual start) finds nothing left and completes.
Activities are called by name, so no I/O module is imported here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow

from workflows.containers.contract import ContainerRef, RemovedOutput, WorkspaceInput
from workflows.containers.names import container_name
from workflows.projects.contract import (
    DELETION_RETRY,
    ContainerEnded,
    DeletionRef,
    EndWorkflowsInput,
    ProjectDeletionInput,
    ProjectDeletionOutput,
    Purged,
    SocketsClosed,
    WorkflowsEnded,
    WorkspaceRemoved,
)
from workflows.shared import call

T = TypeVar("T")


@workflow.defn(name="ProjectDeletion")
class ProjectDeletionWorkflow:
    @workflow.run
    async def run(self, data: ProjectDeletionInput) -> ProjectDeletionOutput:
        ref = DeletionRef(data.project_id)
        ended = await self._step("project_deletion_end_container", ref, ContainerEnded, 180)
        queues = [ended.docker_queue] if ended.docker_queue else []
        removed = False
        for queue in queues:
            gone = await self._step(
                "docker_remove_container",
                ContainerRef(container_name(data.project_id)),
                RemovedOutput,
                60,
                task_queue=queue,
            )
            removed = removed or gone.removed
        workflows = await self._step(
            "project_deletion_end_workflows",
            EndWorkflowsInput(data.project_id, keep=[workflow.info().workflow_id]),
            WorkflowsEnded,
            60,
        )
        await self._step("project_deletion_close_sockets", ref, SocketsClosed, 30)
        purged = await self._step("project_deletion_purge", ref, Purged, 120)
        workspaces = 0
        for queue in queues:
            host = await self._step(
                "docker_remove_workspace",
                WorkspaceInput(data.project_id),
                WorkspaceRemoved,
                300,
                task_queue=queue,
            )
            workspaces += host.removed
        local = await self._step("project_deletion_remove_workspace", ref, WorkspaceRemoved, 300)
        workspaces += local.removed
        return ProjectDeletionOutput(
            docker_queues=queues,
            container_removed=ended.was_running or removed,
            workflows_ended=workflows.ended,
            workspaces_removed=workspaces,
            purged=purged.purged,
        )

    async def _step(
        self,
        name: str,
        arg: Any,
        result_type: type[T],
        timeout_s: float,
        *,
        task_queue: str | None = None,
    ) -> T:
        return await call(
            name,
            arg,
            result_type,
            timeout=timedelta(seconds=timeout_s),
            retry=DELETION_RETRY,
            heartbeat=timedelta(seconds=30),
            task_queue=task_queue,
        )
