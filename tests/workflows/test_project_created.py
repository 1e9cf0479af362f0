"""A workflow started by the API runs on the worker and is visible through Temporal."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from store import db
from tests.support import create_project, register, wait_until
from workflows.projects.contract import ProjectCreatedOutput, project_created_workflow_id
from workflows.projects.created import ProjectCreatedWorkflow
from workflows.shared import PROJECT_ID, USER_ID


async def test_project_creation_runs_the_audit_workflow(
    http: httpx.AsyncClient, temporal_client: Client, database_url: str
) -> None:
    owner = await register(http)
    project = await create_project(http, owner, name="audited")
    handle = temporal_client.get_workflow_handle_for(
        ProjectCreatedWorkflow.run, project_created_workflow_id(project["id"])
    )

    async def started() -> bool:
        try:
            await handle.describe()
            return True
        except RPCError:
            return False

    # Started by the outbox relay once the project's transaction has committed.
    await wait_until(started, timeout=15, what="the workflow to be started")
    result = await handle.result()
    assert result == ProjectCreatedOutput(audit_recorded=True)

    description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.COMPLETED
    attrs = description.typed_search_attributes
    assert attrs.get(PROJECT_ID) == project["id"]
    assert attrs.get(USER_ID) == owner.id

    # Operators filter by project in the Temporal UI: the same query finds it.
    async def listed() -> bool:
        query = f"ProjectId = '{project['id']}'"
        return [w.id async for w in temporal_client.list_workflows(query)] == [handle.id]

    await wait_until(listed, timeout=15, what="the workflow to be visible by ProjectId")

    conn: asyncpg.Connection = await db.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT action, actor_id::text, details, request_id, ip, created_at"
            " FROM audit_events WHERE project_id = $1",
            uuid.UUID(project["id"]),
        )
    finally:
        await conn.close()
    assert [(r["action"], r["actor_id"]) for r in rows] == [("project.created", owner.id)]
    assert rows[0]["details"]["name"] == "audited"
    assert rows[0]["request_id"]
    assert rows[0]["ip"] == "127.0.0.1"
    # The time of the request, not of the (later) activity.
    assert rows[0]["created_at"].isoformat() == project["created_at"]
