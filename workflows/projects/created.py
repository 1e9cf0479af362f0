"""Follow-up work for a new project, run durably after the API has answered."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.projects.contract import ProjectCreatedInput, ProjectCreatedOutput
from workflows.shared import DB_RETRY, AuditEventInput, AuditEventOutput


@workflow.defn(name="ProjectCreated")
class ProjectCreatedWorkflow:
    @workflow.run
    async def run(self, data: ProjectCreatedInput) -> ProjectCreatedOutput:
        result = await workflow.execute_activity(
            "record_audit_event",
            AuditEventInput(
                # The workflow id is unique per project, so a retried activity writes once.
                event_key=f"{workflow.info().workflow_id}/project.created",
                action="project.created",
                project_id=data.project_id,
                actor_id=data.owner_id,
                details={"name": data.name},
                target=data.project_id,
                request_id=data.request_id,
                ip=data.client_ip,
                occurred_at=data.created_at,
            ),
            result_type=AuditEventOutput,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=DB_RETRY,
        )
        return ProjectCreatedOutput(audit_recorded=result.recorded)
