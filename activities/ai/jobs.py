"""The AI jobs' activities: job rows, context gathering, ruff, model calls (cached, metered),
proposed changes, and the glue to run generated tests in the project's container.
"""

from __future__ import annotations

import ast
import base64
import difflib
import hashlib
import json
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
from temporalio import activity
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.ai.container_runner import BOOTSTRAP, MARK
from activities.ai.metering import BudgetMeter
from activities.ai.prompts import PROMPT_VERSION
from activities.ai.provider import Provider, ProviderError, ProviderRequest
from activities.ai.ruff_lint import ruff_findings
from collab.broker import Broker
from collab.channels import ai_jobs_channel
from files.errors import FileSystemError, checked_path
from files.service import FileSystem
from store import ai as store
from store import ai_budget
from store.ai_budget import Budgets
from store.db import Conn
from vaporform import metrics
from workflows.ai.contract import (
    SCRATCH_ROOT,
    AskInput,
    AskOutput,
    Change,
    ComposeInput,
    ComposeOutput,
    EnsureContainerInput,
    EnsureContainerOutput,
    GatherInput,
    GatherOutput,
    JobRef,
    LintInput,
    LintOutput,
    ParseRunInput,
    PrepareRunInput,
    ProposeInput,
    ProposeOutput,
    RunReport,
    SaveFindingsInput,
    SourceFile,
    StatusInput,
    TestOutcome,
)
from workflows.ai.errors import (
    BUDGET_EXCEEDED,
    INVALID_ANSWER,
    NO_FILES,
    PROVIDER_NOT_CONFIGURED,
    PROVIDER_REJECTED,
    PROVIDER_RETRYABLE,
)
from workflows.containers.contract import (
    ContainerSpec,
    ContainerStatus,
    ContainerWorkflowInput,
    EnsureRunningInput,
    ExecInput,
)
from workflows.containers.names import Status, container_workflow_id
from workflows.shared import search_attributes

RUNNER_SOURCE = Path(__file__).with_name("container_runner.py").read_text()
TRACEBACK_FILE = re.compile(r'File "([^"]+)", line \d+')
TEST_FILE = re.compile(r"(^|/)(test_[^/]*\.py|[^/]*_test\.py)$")
_ERRORS = {
    "retryable": PROVIDER_RETRYABLE,
    "rejected": PROVIDER_REJECTED,
    "not_configured": PROVIDER_NOT_CONFIGURED,
    "invalid_answer": INVALID_ANSWER,
    "budget_exceeded": BUDGET_EXCEEDED,
}
# A reservation outlives its call's longest possible attempt by this much (then it expires).
RESERVATION_MARGIN = timedelta(minutes=1)
DEFAULT_ASK_TIMEOUT = timedelta(minutes=10)


def tokens_of(text: str) -> int:
    """A cheap estimate (4 characters a token): the budget only needs to be roughly right."""
    return len(text) // 4 + 1


def input_hash(provider: Provider, data: AskInput) -> str:
    key = {
        "provider": provider.name,
        "model": provider.model,
        "prompt": PROMPT_VERSION,
        "task": data.task,
        "files": [[f.path, hashlib.sha256(f.content.encode()).hexdigest()] for f in data.files],
        "payload": data.payload,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


class AIActivities:
    def __init__(
        self,
        pool: asyncpg.Pool,
        fs: FileSystem,
        provider: Provider,
        broker: Broker | None,
        client: Client,
        budgets: Budgets,
    ) -> None:
        self._pool = pool
        self._fs = fs
        self._provider = provider
        self._broker = broker
        self._client = client
        self._budgets = budgets

    def all(self) -> list[Any]:
        return [
            self.set_status,
            self.gather,
            self.lint,
            self.ask,
            self.save_findings,
            self.propose,
            self.ensure_container,
            self.prepare_run,
            self.parse_run,
            self.compose_tests,
        ]

    # --- job rows and events --------------------------------------------------------

    @activity.defn(name="ai_set_status")
    async def set_status(self, data: StatusInput) -> bool:
        """Record the job's state, then announce it (after the commit, like every publish)."""
        async with self._pool.acquire() as conn:
            changed = await store.set_status(
                conn, UUID(data.job.job_id), data.status, result=data.result, error=data.error
            )
        if changed and self._broker is not None:
            message = {
                "type": "job",
                "job_id": data.job.job_id,
                "kind": data.job.kind,
                "status": data.status,
            }
            try:
                await self._broker.publish(
                    ai_jobs_channel(data.job.project_id), json.dumps(message).encode()
                )
            except Exception:  # the event is a hint; the row is the truth and is committed
                activity.logger.exception("could not announce the job state")
        return changed

    # --- context ----------------------------------------------------------------------

    @activity.defn(name="ai_gather")
    async def gather(self, data: GatherInput) -> GatherOutput:
        project_id = UUID(data.project_id)
        rows = await self._fs.listing(project_id)
        known = {row.path: row for row in rows}
        tests = sorted(p for p in known if TEST_FILE.search(p))
        wanted: list[str] = []
        skipped: list[str] = []
        if data.paths is not None:
            for raw in data.paths:
                try:
                    path = checked_path(raw)
                except FileSystemError:
                    skipped.append(str(raw))
                    continue
                (wanted if path in known else skipped).append(path)
        if data.mentioned_in:
            for raw in TRACEBACK_FILE.findall(data.mentioned_in):
                path = raw.removeprefix("/workspace/").removeprefix("./")
                if path in known and path not in wanted:
                    wanted.append(path)
        if data.paths is None and not data.mentioned_in:
            wanted = [r.path for r in sorted(rows, key=lambda r: (r.size, r.path))]
        files: list[SourceFile] = []
        spent = 0
        for path in wanted:
            found = await self._fs.read(project_id, path)
            if found is None or found.text is None:
                skipped.append(path)
                continue
            cost = tokens_of(found.text) + tokens_of(path) + 8
            if spent + cost > data.token_budget:
                skipped.append(path)
                continue
            spent += cost
            files.append(SourceFile(path, found.version, found.text))
        if not files and (data.paths or (data.paths is None and not data.mentioned_in)):
            raise ApplicationError(
                "no readable text file to work on"
                + (f" (skipped: {', '.join(skipped[:20])})" if skipped else ""),
                type=NO_FILES,
                non_retryable=True,
            )
        return GatherOutput(files=files, skipped=skipped, tests=tests)

    @activity.defn(name="ai_lint")
    async def lint(self, data: LintInput) -> LintOutput:
        return LintOutput(findings=await ruff_findings(data.files))

    # --- the model ----------------------------------------------------------------------

    @activity.defn(name="ai_ask")
    async def ask(self, data: AskInput) -> AskOutput:
        """One step of a job: from the cache when the same request was answered before, else
        from the provider, each model call within the budgets (`BudgetMeter`).

        A step that a retried activity finds in the cache after an earlier attempt paid for
        it records nothing more: it neither pays twice nor counts twice."""
        provider = self._provider
        key = input_hash(provider, data)
        job_id = UUID(data.job.job_id)
        step_key = f"{data.job.job_id}:{data.step}"
        info = activity.info()
        async with self._pool.acquire() as conn:
            cached = await store.cached_answer(conn, key)
            if cached is not None:
                if not await ai_budget.step_billed(conn, job_id, step_key):
                    await _record_unbilled(conn, step_key, data.job, provider.model, cached=True)
                metrics.AI_STEPS.labels(provider.model, data.job.kind, "cached").inc()
                return AskOutput(answer=cached, cached=True, calls=0)
        meter = BudgetMeter(
            self._pool,
            self._budgets,
            data.job,
            step_key,
            info.attempt,
            provider.model,
            ttl_s=(
                (info.start_to_close_timeout or DEFAULT_ASK_TIMEOUT) + RESERVATION_MARGIN
            ).total_seconds(),
        )
        if info.attempt > 1:
            await meter.release_earlier_attempts()
        began = time.perf_counter()
        try:
            got = await provider.ask(
                ProviderRequest(task=data.task, files=data.files, payload=data.payload),
                activity.heartbeat,
                meter,
            )
        except ProviderError as exc:
            metrics.AI_STEPS.labels(provider.model, data.job.kind, "failed").inc()
            raise ApplicationError(
                exc.message,
                *([exc.details] if exc.details else []),
                type=_ERRORS.get(exc.kind, PROVIDER_REJECTED),
                non_retryable=exc.kind != "retryable",
                next_retry_delay=None if exc.retry_after_s is None else _delay(exc.retry_after_s),
            ) from None
        metrics.AI_STEPS.labels(provider.model, data.job.kind, "answered").inc()
        metrics.AI_STEP_DURATION.labels(provider.model, data.job.kind).observe(
            time.perf_counter() - began
        )
        usage = got.usage
        async with self._pool.acquire() as conn:
            if usage.calls:  # bought answers are cached; their calls are metered already
                await store.store_answer(conn, key, provider.model, got.answer)
            else:  # offline answers are computed, not bought: a row of zeros, as a record
                await _record_unbilled(conn, step_key, data.job, provider.model, cached=False)
        return AskOutput(
            answer=got.answer,
            cached=False,
            calls=usage.calls,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
        )

    # --- results ------------------------------------------------------------------------

    @activity.defn(name="ai_save_findings")
    async def save_findings(self, data: SaveFindingsInput) -> int:
        async with self._pool.acquire() as conn:
            await store.replace_findings(
                conn,
                UUID(data.job.job_id),
                UUID(data.job.project_id),
                [
                    store.Finding(
                        path=f.path,
                        file_version=f.file_version,
                        line_start=f.line_start,
                        line_end=f.line_end,
                        severity=f.severity,
                        category=f.category,
                        message=f.message,
                        suggestion=f.suggestion,
                        source=f.source,
                    )
                    for f in data.findings
                ],
            )
        return len(data.findings)

    @activity.defn(name="ai_propose")
    async def propose(self, data: ProposeInput) -> ProposeOutput:
        """Proposed files as changes against the versions they were made for, with diffs."""
        project_id = UUID(data.project_id)
        changes: list[Change] = []
        refused: dict[str, str] = {}
        for item in data.files:
            try:
                path = checked_path(item.path)
            except FileSystemError as exc:
                refused[item.path] = exc.message
                continue
            current = await self._fs.read(project_id, path)
            if current is not None and current.text is None:
                refused[path] = "a binary file cannot be changed by a text answer"
                continue
            before = "" if current is None else current.text or ""
            if before == item.content:
                continue
            diff = "".join(
                difflib.unified_diff(
                    before.splitlines(keepends=True),
                    item.content.splitlines(keepends=True),
                    fromfile="/dev/null" if current is None else f"a/{path}",
                    tofile=f"b/{path}",
                )
            )
            changes.append(
                Change(path, 0 if current is None else current.version, item.content, diff)
            )
        return ProposeOutput(changes=changes, refused=refused)

    # --- the container ------------------------------------------------------------------

    @activity.defn(name="ai_ensure_container")
    async def ensure_container(self, data: EnsureContainerInput) -> EnsureContainerOutput:
        """Start the project's container as `POST .../container` does (update-with-start on
        its entity workflow), or find it running."""
        target = data.target
        operation: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            "ContainerWorkflow",
            ContainerWorkflowInput(
                project_id=data.project_id,
                user_id=data.user_id,
                docker_queue=target.docker_queue,
                idle_timeout_s=target.idle_timeout_s,
                health_timeout_s=target.health_timeout_s,
            ),
            id=container_workflow_id(data.project_id),
            task_queue=activity.info().task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=search_attributes(data.project_id, data.user_id),
        )
        try:
            status: ContainerStatus = await self._client.execute_update_with_start_workflow(
                "ensure_running",
                EnsureRunningInput(
                    spec=ContainerSpec(image=target.image), requested_by=data.user_id
                ),
                start_workflow_operation=operation,
                result_type=ContainerStatus,
            )
        except RPCError as exc:  # e.g. the workflow completed just now: Temporal retries us
            raise ApplicationError(f"could not reach the container workflow: {exc}") from exc
        if status.status != Status.RUNNING or not status.container_id:
            return EnsureContainerOutput(
                running=False, error=status.error or f"the container is {status.status}"
            )
        return EnsureContainerOutput(
            running=True, container_id=status.container_id, docker_queue=status.docker_queue
        )

    @activity.defn(name="ai_prepare_run")
    async def prepare_run(self, data: PrepareRunInput) -> ExecInput:
        """The exec that stages the runner and candidate tests in the container's tmpfs and
        runs them (one argument, base64: no shell quoting, no files in the workspace)."""
        scratch = f"{SCRATCH_ROOT}/{data.job_id}"
        files = {"vf_runner.py": RUNNER_SOURCE, **data.staged}
        spec = {
            "scratch": scratch,
            "files": files,
            "workspace": "/workspace",
            "target": f"/workspace/{data.target}",
            "test_files": [f"/workspace/{p}" for p in data.workspace_tests]
            + [f"{scratch}/{name}" for name in data.staged],
            "runs": data.runs,
            "test_timeout_s": data.test_timeout_s,
        }
        encoded = base64.b64encode(json.dumps(spec).encode()).decode()
        # Linux caps one argument at 128 KiB.
        if len(encoded) > 120 * 1024:
            raise ApplicationError(
                "the generated tests are too large to run", type=INVALID_ANSWER, non_retryable=True
            )
        return ExecInput(
            container_id=data.container_id,
            command=["python3", "-B", "-c", BOOTSTRAP, encoded],
            timeout_s=data.timeout_s,
            output_cap_bytes=1024 * 1024,
        )

    @activity.defn(name="ai_parse_run")
    async def parse_run(self, data: ParseRunInput) -> RunReport:
        parts = data.stdout.split(MARK)
        if len(parts) < 3:
            why = "the test run timed out" if data.timed_out else "the test runner did not report"
            tail = (data.stderr or data.stdout)[-2000:]
            return RunReport(ok=False, error=f"{why} (exit code {data.exit_code}): {tail}")
        raw = json.loads(parts[1])
        return RunReport(
            ok=True,
            executable=raw["executable"],
            import_lines=raw["import_lines"],
            tests=[TestOutcome(**t) for t in raw["tests"]],
            collect_errors=raw["collect_errors"],
        )

    @activity.defn(name="ai_compose_tests")
    async def compose_tests(self, data: ComposeInput) -> ComposeOutput:
        return ComposeOutput(code=compose(data.sources, data.keep))


async def _record_unbilled(
    conn: Conn, call_key: str, job: JobRef, model: str, *, cached: bool
) -> None:
    """A row of zeros, as a record of a step answered without a bought call (from the cache,
    or computed by the offline provider); the calls that were bought are metered already."""
    await store.record_usage(
        conn,
        call_key=call_key,
        job_id=UUID(job.job_id),
        project_id=UUID(job.project_id),
        user_id=UUID(job.user_id) if job.user_id else None,
        model=model,
        calls=0,
        input_tokens=0,
        output_tokens=0,
        cache_creation_tokens=0,
        cache_read_tokens=0,
        cost_usd=0.0,
        cached=cached,
    )


def _delay(seconds: float) -> timedelta:
    # Zero would mean "use the policy"; the server asked for now, so wait the least we can.
    return timedelta(seconds=max(seconds, 0.1))


def compose(sources: dict[str, str], keep: list[list[str]]) -> str:
    """One test module of the kept tests: each source file's module-level statements (imports,
    helpers) once, then the kept test functions, in order."""
    wanted: dict[str, set[str]] = {}
    for file, name in keep:
        wanted.setdefault(file, set()).add(name)
    preamble: list[str] = []
    bodies: list[str] = []
    for file, code in sources.items():
        if file not in wanted:
            continue
        tree = ast.parse(code)
        for node in tree.body:
            segment = ast.get_source_segment(code, node, padded=False) or ""
            decorated = getattr(node, "decorator_list", [])
            if decorated:
                first = min(d.lineno for d in decorated)
                segment = "\n".join(code.splitlines()[first - 1 : node.end_lineno])
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and (
                node.name.startswith("test")
            ):
                if node.name in wanted[file]:
                    bodies.append(segment)
            elif segment not in preamble:
                preamble.append(segment)
    header = "# Tests written by Vaporform's AI test generation; each passed every run.\n"
    return header + "\n".join(preamble) + "\n\n\n" + "\n\n\n".join(bodies) + "\n"
