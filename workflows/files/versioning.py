"""Per-project entity workflow for the follow-up work of file changes, and retention."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.files.contract import (
    BATCHES_BEFORE_CONTINUE_AS_NEW,
    DEBOUNCE,
    IDLE_EXIT,
    MAX_BATCH_DELAY,
    ChangedPaths,
    FilesChanged,
    ProjectRef,
    ProjectStats,
    RetentionInput,
    RetentionOutput,
    VersioningState,
    WorkspaceImportInput,
    WorkspaceImportOutput,
)
from workflows.shared import DB_RETRY

# Past this many distinct paths a batch rescans the whole workspace instead.
MAX_TRACKED_PATHS = 1000
# Histories recorded before a batch first asked whether its project still exists replay
# without that activity (tests/workflows/test_replay.py).
LIVENESS_PATCH = "versioning-ends-for-a-deleted-project"


@workflow.defn(name="Versioning")
class VersioningWorkflow:
    def __init__(self) -> None:
        self._paths: set[str] = set()
        self._origins: set[str] = set()
        self._overflow = False
        self._last_signal = 0
        self._seen = 0

    @workflow.signal
    def files_changed(self, change: FilesChanged) -> None:
        self._origins.add(change.origin)
        if change.full_scan or len(self._paths) + len(change.paths) > MAX_TRACKED_PATHS:
            self._overflow = True
        else:
            self._paths.update(change.paths)
        self._last_signal += 1

    @workflow.query
    def pending(self) -> list[str]:
        return sorted(self._paths)

    def _signalled_since(self) -> bool:
        return self._last_signal != self._seen

    def _has_work(self) -> bool:
        return bool(self._origins)

    async def _debounce(self) -> None:
        deadline = workflow.now() + MAX_BATCH_DELAY
        while workflow.now() < deadline:
            self._seen = self._last_signal
            try:
                await workflow.wait_condition(self._signalled_since, timeout=DEBOUNCE)
            except TimeoutError:
                return

    @workflow.run
    async def run(self, state: VersioningState) -> None:
        self._paths.update(state.pending_paths)
        self._origins.update(state.pending_origins)
        batches = state.batches
        while True:
            try:
                await workflow.wait_condition(self._has_work, timeout=IDLE_EXIT)
            except TimeoutError:
                if not self._has_work():
                    return
            await self._debounce()
            paths, origins, overflow = sorted(self._paths), set(self._origins), self._overflow
            self._paths, self._origins, self._overflow = set(), set(), False
            if workflow.patched(LIVENESS_PATCH) and not await self._project_is_live(
                state.project_id
            ):
                # ProjectDeletion ends this workflow, but a change announced just before the
                # DELETE committed can start it again afterwards: a deleted project's batch
                # would import into, and count the files of, a project that is going away.
                return
            await self._handle(state.project_id, paths, origins, overflow)
            batches += 1
            if (
                batches >= BATCHES_BEFORE_CONTINUE_AS_NEW
                or workflow.info().is_continue_as_new_suggested()
            ):
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    VersioningState(
                        project_id=state.project_id,
                        pending_paths=sorted(self._paths),
                        pending_origins=sorted(self._origins),
                        batches=0,
                    )
                )

    async def _project_is_live(self, project_id: str) -> bool:
        live: bool = await workflow.execute_activity(
            "project_is_live",
            ProjectRef(project_id),
            result_type=bool,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=DB_RETRY,
        )
        return live

    async def _handle(
        self, project_id: str, paths: list[str], origins: set[str], overflow: bool
    ) -> None:
        changed = list(paths)
        if "workspace" in origins:
            # Programs in the container changed files: import them as versions first.
            report = await workflow.execute_activity(
                "import_workspace_changes",
                WorkspaceImportInput(project_id, None if overflow else paths),
                result_type=WorkspaceImportOutput,
                start_to_close_timeout=timedelta(minutes=5),
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=DB_RETRY,
            )
            changed = sorted(set(report.imported) | set(report.deleted))
            if not changed and origins == {"workspace"}:
                return  # our own mirror writes echoing back: nothing new
        await workflow.execute_activity(
            "refresh_project_stats",
            ProjectRef(project_id),
            result_type=ProjectStats,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DB_RETRY,
        )
        await workflow.execute_activity(
            "publish_file_changes",
            ChangedPaths(project_id, changed, ",".join(sorted(origins))),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=DB_RETRY,
        )


@workflow.defn(name="FilesRetention")
class RetentionWorkflow:
    """Prunes versions beyond each project's policy, then collects unreferenced blobs."""

    @workflow.run
    async def run(self, data: RetentionInput) -> RetentionOutput:
        pruned = await workflow.execute_activity(
            "prune_versions",
            data,
            result_type=RetentionOutput,
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=timedelta(seconds=60),
            retry_policy=DB_RETRY,
        )
        collected = await workflow.execute_activity(
            "collect_garbage",
            data,
            result_type=RetentionOutput,
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(seconds=60),
            retry_policy=DB_RETRY,
        )
        return RetentionOutput(
            versions_pruned=pruned.versions_pruned,
            blobs_deleted=collected.blobs_deleted,
            blobs_kept=collected.blobs_kept,
        )
