"""The AI job workflows on the real Temporal dev server, with fake activities registered under
the real activity names: no model, no database, no Docker.

Each test scripts what the activities answer and checks what the workflow asked them, what it
recorded as the job's state (the JSON the API serves) and what it returned.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

import worker as worker_module
from worker import sandboxed_worker

# Modules, not names: pytest would try to collect the `Test*` classes they hold.
from workflows.ai import contract as ai
from workflows.ai import tests as testgen
from workflows.ai.debug import DebugWorkflow
from workflows.ai.errors import (
    BUDGET_EXCEEDED,
    NO_FILES,
    PROVIDER_REJECTED,
    PROVIDER_RETRYABLE,
)
from workflows.ai.findings import finding_public
from workflows.ai.generate import CodeGenerationWorkflow
from workflows.ai.review import CodeReviewWorkflow
from workflows.containers.contract import ExecInput, ExecOutput

SOURCE = "import os\n\n\ndef main(argv):\n    return undefined_name + len(argv)\n"
CALC = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
TARGET = ai.ContainerTarget(docker_queue="docker-fake", image="python:fake")


@dataclass
class Script:
    """What the fake activities answer."""

    files: list[ai.SourceFile]
    lint: list[ai.FindingData] = field(default_factory=list)
    # One per `ai_ask`, in order; an exception is raised instead of answering.
    answers: list[dict[str, Any] | Exception] = field(default_factory=list)
    gather_error: Exception | None = None
    container: ai.EnsureContainerOutput | None = None
    # Test runs by the names of the files staged for them ("" for the baseline run).
    runs: dict[str, ai.RunReport] = field(default_factory=dict)
    command_output: ExecOutput | None = None


class FakeAI:
    """The AI activities (and the Docker host's `docker_exec`) by name; each call is logged."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.calls: list[tuple[str, Any]] = []
        self.statuses: list[ai.StatusInput] = []

    def _log(self, data: Any) -> None:
        self.calls.append((activity.info().activity_type, data))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def inputs(self, name: str) -> list[Any]:
        return [data for called, data in self.calls if called == name]

    @activity.defn(name="ai_set_status")
    async def set_status(self, data: ai.StatusInput) -> bool:
        self._log(data)
        self.statuses.append(data)
        return True

    @activity.defn(name="ai_gather")
    async def gather(self, data: ai.GatherInput) -> ai.GatherOutput:
        self._log(data)
        if self.script.gather_error is not None:
            raise self.script.gather_error
        return ai.GatherOutput(files=self.script.files, skipped=["big.bin"])

    @activity.defn(name="ai_lint")
    async def lint(self, data: ai.LintInput) -> ai.LintOutput:
        self._log(data)
        return ai.LintOutput(findings=self.script.lint)

    @activity.defn(name="ai_ask")
    async def ask(self, data: ai.AskInput) -> ai.AskOutput:
        self._log(data)
        answer = self.script.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return ai.AskOutput(answer=answer, cached=False, calls=1)

    @activity.defn(name="ai_save_findings")
    async def save_findings(self, data: ai.SaveFindingsInput) -> int:
        self._log(data)
        return len(data.findings)

    @activity.defn(name="ai_propose")
    async def propose(self, data: ai.ProposeInput) -> ai.ProposeOutput:
        self._log(data)
        versions = {f.path: f.version for f in self.script.files}
        return ai.ProposeOutput(
            changes=[
                ai.Change(f.path, versions.get(f.path, 0), f.content, f"diff of {f.path}")
                for f in data.files
            ]
        )

    @activity.defn(name="ai_ensure_container")
    async def ensure_container(self, data: ai.EnsureContainerInput) -> ai.EnsureContainerOutput:
        self._log(data)
        assert self.script.container is not None
        # Commands go to the queue of the container's Docker host: here, this worker's.
        return replace(self.script.container, docker_queue=activity.info().task_queue)

    @activity.defn(name="ai_prepare_run")
    async def prepare_run(self, data: ai.PrepareRunInput) -> ExecInput:
        self._log(data)
        return ExecInput(data.container_id, ["run", *sorted(data.staged)], data.timeout_s)

    @activity.defn(name="docker_exec")
    async def docker_exec(self, data: ExecInput) -> ExecOutput:
        self._log(data)
        if data.command[0] == "run":  # a test run: its report is looked up by what it staged
            return ExecOutput(0, " ".join(data.command[1:]), "", 5, False, False)
        assert self.script.command_output is not None
        return self.script.command_output

    @activity.defn(name="ai_parse_run")
    async def parse_run(self, data: ai.ParseRunInput) -> ai.RunReport:
        self._log(data)
        return self.script.runs[data.stdout]

    @activity.defn(name="ai_compose_tests")
    async def compose_tests(self, data: ai.ComposeInput) -> ai.ComposeOutput:
        self._log(data)
        return ai.ComposeOutput(code=f"# composed {data.keep}\n")

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
            self.docker_exec,
            self.parse_run,
            self.compose_tests,
        ]


@asynccontextmanager
async def serving(client: Client, fake: FakeAI) -> AsyncIterator[str]:
    """A worker of the AI workflows and the fakes on a task queue of its own; yields it."""
    queue = f"ai-fakes-{uuid.uuid4().hex}"
    async with sandboxed_worker(
        client,
        task_queue=queue,
        workflows=[
            CodeReviewWorkflow,
            testgen.TestGenerationWorkflow,
            DebugWorkflow,
            CodeGenerationWorkflow,
        ],
        activities=fake.all(),
        workflow_runner=worker_module.WORKFLOW_RUNNER,
    ):
        yield queue


def job_ref(kind: str) -> ai.JobRef:
    return ai.JobRef(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()), kind)


def model_finding(line_start: int, line_end: int, path: str = "app.py") -> dict[str, Any]:
    return {
        "path": path,
        "line_start": line_start,
        "line_end": line_end,
        "severity": "error",
        "category": "bug",
        "message": "undefined_name is never defined",
        "suggestion": None,
    }


def failure(message: str, error_type: str) -> ApplicationError:
    return ApplicationError(message, type=error_type, non_retryable=True)


def review_script(*answers: dict[str, Any] | Exception) -> Script:
    ruff = ai.FindingData("app.py", 1, 1, "warning", "ruff F401", "unused", None, "ruff", 3)
    return Script(files=[ai.SourceFile("app.py", 3, SOURCE)], lint=[ruff], answers=list(answers))


async def test_review_keeps_findings_on_real_lines_and_records_the_result(
    temporal_client: Client,
) -> None:
    findings = [model_finding(5, 5), model_finding(40, 42), model_finding(1, 1, "x.py")]
    fake = FakeAI(review_script({"findings": findings}))
    job = job_ref(ai.Kind.REVIEW)
    async with serving(temporal_client, fake) as queue:
        handle = await temporal_client.start_workflow(
            CodeReviewWorkflow.run,
            ai.ReviewInput(job, ["app.py"], 5000),
            id=ai.ai_workflow_id(job.kind, job.job_id),
            task_queue=queue,
        )
        result = await handle.result()
        progress = await handle.query("progress", result_type=ai.AIProgress)

    kept = ai.FindingData(**model_finding(5, 5), file_version=3)
    assert result.findings == [kept]
    assert [(d.finding["line_start"], d.reason) for d in result.dropped] == [
        (40, "lines 40-42 do not exist (5 lines)"),
        (1, "the file was not part of the review"),
    ]
    assert fake.names() == [
        "ai_set_status",
        "ai_gather",
        "ai_lint",
        "ai_ask",
        "ai_save_findings",
        "ai_set_status",
    ]
    assert fake.inputs("ai_gather") == [ai.GatherInput(job.project_id, ["app.py"], 5000)]
    (asked,) = fake.inputs("ai_ask")
    assert (asked.step, asked.task, asked.files) == ("review", "review", fake.script.files)
    assert asked.payload == {"ruff": [finding_public(fake.script.lint[0])]}
    assert fake.inputs("ai_save_findings") == [ai.SaveFindingsInput(job, [kept])]
    assert progress == ai.AIProgress(stage="succeeded", detail="", round=0, model_calls=1)

    # What the job row holds, and so what the API serves: the keys clients read.
    assert [(s.status, s.error) for s in fake.statuses] == [("running", None), ("succeeded", None)]
    assert fake.statuses[1].result == {
        "findings": [{**model_finding(5, 5), "source": "model", "file_version": 3}],
        "dropped": [
            {
                "finding": {**model_finding(40, 42), "source": "model"},
                "reason": "lines 40-42 do not exist (5 lines)",
            },
            {
                "finding": {**model_finding(1, 1, "x.py"), "source": "model"},
                "reason": "the file was not part of the review",
            },
        ],
        "ruff_findings": 1,
        "files": [{"path": "app.py", "version": 3}],
        "skipped": ["big.bin"],
        "cached": False,
        "model_calls": 1,
    }
    assert ai.result_json(result) == fake.statuses[1].result


@pytest.mark.parametrize(
    ("where", "error", "code"),
    [
        ("ask", failure("refused (400)", PROVIDER_REJECTED), "ai_provider_rejected"),
        ("gather", failure("no readable text file", NO_FILES), "no_files"),
        ("ask", failure("surprise", "SomethingElse"), "ai_job_failed"),
    ],
)
async def test_an_activity_error_becomes_the_job_error_code(
    temporal_client: Client, where: str, error: ApplicationError, code: str
) -> None:
    script = review_script(error if where == "ask" else {"findings": []})
    if where == "gather":
        script.gather_error = error
    fake = FakeAI(script)
    job = job_ref(ai.Kind.REVIEW)
    async with serving(temporal_client, fake) as queue:
        handle = await temporal_client.start_workflow(
            CodeReviewWorkflow.run,
            ai.ReviewInput(job, ["app.py"]),
            id=ai.ai_workflow_id(job.kind, job.job_id),
            task_queue=queue,
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        progress = await handle.query("progress", result_type=ai.AIProgress)

    cause = failed.value.cause
    assert isinstance(cause, ApplicationError)
    assert (cause.type, cause.message, cause.non_retryable) == (code, error.message, True)
    assert [(s.status, s.result) for s in fake.statuses] == [("running", None), ("failed", None)]
    assert fake.statuses[1].error == {"code": code, "message": error.message}
    assert "ai_save_findings" not in fake.names()
    assert fake.names().count(f"ai_{where}") == 1  # non-retryable: tried once
    assert (progress.stage, progress.detail) == ("failed", error.message)


async def test_a_budget_refusal_carries_its_details_into_the_job_error(
    temporal_client: Client,
) -> None:
    details = {"scope": "user", "budget_usd": 1.0, "spent_usd": 0.99, "reserved_usd": 0.0}
    refused = ApplicationError("over budget", details, type=BUDGET_EXCEEDED, non_retryable=True)
    fake = FakeAI(review_script(refused))
    job = job_ref(ai.Kind.REVIEW)
    async with serving(temporal_client, fake) as queue:
        with pytest.raises(WorkflowFailureError):
            await temporal_client.execute_workflow(
                CodeReviewWorkflow.run,
                ai.ReviewInput(job),
                id=ai.ai_workflow_id(job.kind, job.job_id),
                task_queue=queue,
            )
    assert fake.statuses[-1].error == {
        "code": "budget_exceeded",
        "message": "over budget",
        "details": details,
    }


async def test_a_busy_provider_is_asked_again(temporal_client: Client) -> None:
    busy = ApplicationError(
        "busy (529)", type=PROVIDER_RETRYABLE, next_retry_delay=timedelta(milliseconds=100)
    )
    fake = FakeAI(review_script(busy, {"findings": []}))
    job = job_ref(ai.Kind.REVIEW)
    async with serving(temporal_client, fake) as queue:
        result = await temporal_client.execute_workflow(
            CodeReviewWorkflow.run,
            ai.ReviewInput(job),
            id=ai.ai_workflow_id(job.kind, job.job_id),
            task_queue=queue,
        )
    assert fake.names().count("ai_ask") == 2
    assert (result.findings, result.model_calls) == ([], 1)
    assert fake.statuses[-1].status == "succeeded"


def outcome(file: str, name: str, passed: int, lines: list[int]) -> ai.TestOutcome:
    error = None if passed == 5 else "AssertionError"
    return ai.TestOutcome(f"/tmp/vaporform-ai/job/{file}", name, passed, 5, error, lines)


def generation_script() -> Script:
    executable = [1, 2, 5, 6]
    imports = [1, 5]
    return Script(
        files=[ai.SourceFile("calc.py", 2, CALC)],
        answers=[
            {"code": "def test_add(): ...\ndef test_sub(): ...\n", "notes": ""},
            {"code": "def test_sub(): ...\ndef test_add_again(): ...\n", "notes": ""},
        ],
        container=ai.EnsureContainerOutput(running=True, container_id="c-1"),
        runs={
            "": ai.RunReport(ok=True, executable=executable, import_lines=imports),
            "candidate_0.py": ai.RunReport(
                ok=True,
                executable=executable,
                import_lines=imports,
                tests=[
                    outcome("candidate_0.py", "test_add", 5, [2]),
                    outcome("candidate_0.py", "test_sub", 2, [6]),
                ],
            ),
            "candidate_1.py": ai.RunReport(
                ok=True,
                executable=executable,
                import_lines=imports,
                tests=[
                    outcome("candidate_1.py", "test_sub", 5, [6]),
                    outcome("candidate_1.py", "test_add_again", 5, [2]),
                ],
            ),
            "kept.py": ai.RunReport(
                ok=True,
                executable=executable,
                import_lines=imports,
                tests=[
                    outcome("kept.py", "test_add", 5, [2]),
                    outcome("kept.py", "test_sub", 5, [6]),
                ],
            ),
        },
    )


async def test_test_generation_feeds_failures_back_and_keeps_what_adds_coverage(
    temporal_client: Client,
) -> None:
    fake = FakeAI(generation_script())
    job = job_ref(ai.Kind.TESTS)
    async with serving(temporal_client, fake) as queue:
        result = await temporal_client.execute_workflow(
            testgen.TestGenerationWorkflow.run,
            ai.TestGenInput(job, "calc.py", TARGET, rounds=1, runs=5),
            id=ai.ai_workflow_id(job.kind, job.job_id),
            task_queue=queue,
        )

    assert fake.names() == [
        "ai_set_status",
        "ai_gather",
        "ai_ensure_container",
        *["ai_prepare_run", "docker_exec", "ai_parse_run"],  # the baseline
        "ai_ask",
        *["ai_prepare_run", "docker_exec", "ai_parse_run"],
        "ai_ask",
        *["ai_prepare_run", "docker_exec", "ai_parse_run"],
        "ai_compose_tests",
        *["ai_prepare_run", "docker_exec", "ai_parse_run"],  # the kept tests, once more
        "ai_propose",
        "ai_set_status",
    ]
    assert fake.inputs("ai_ensure_container") == [
        ai.EnsureContainerInput(job.project_id, job.user_id, TARGET)
    ]
    runs = fake.inputs("ai_prepare_run")
    assert [(sorted(r.staged), r.runs) for r in runs] == [
        ([], 1),
        (["candidate_0.py"], 5),
        (["candidate_1.py"], 5),
        (["kept.py"], 5),
    ]
    first, second = fake.inputs("ai_ask")
    assert first.payload == {"path": "calc.py", "module": "calc", "existing_tests": []}
    assert (second.step, second.payload["failures"]) == (
        "tests-1",
        [{"test": "test_sub", "passed_runs": 2, "runs": 5, "error": "AssertionError"}],
    )
    (composed,) = fake.inputs("ai_compose_tests")
    assert composed.keep == [["candidate_0.py", "test_add"], ["candidate_1.py", "test_sub"]]
    (proposed,) = fake.inputs("ai_propose")
    assert [f.path for f in proposed.files] == ["tests/test_calc_ai.py"]

    code = f"# composed {composed.keep}\n"
    assert fake.statuses[-1].result == {
        "path": "calc.py",
        "generated": 3,
        "built": 3,
        "not_built": {},
        "passed": 3,
        "kept": 2,
        "tests": [
            {"name": "test_add", "verdict": "kept", "passed_runs": 5, "runs": 5, "error": None},
            {
                "name": "test_add_again",
                "verdict": "no new coverage",
                "passed_runs": 5,
                "runs": 5,
                "error": None,
            },
            {"name": "test_sub", "verdict": "kept", "passed_runs": 5, "runs": 5, "error": None},
        ],
        "coverage_before": 0.0,
        "coverage_after": 100.0,
        "coverage_measured_by": "sys.settrace line coverage in the project's container",
        "changes": [
            {
                "path": "tests/test_calc_ai.py",
                "base_version": 0,
                "content": code,
                "diff": "diff of tests/test_calc_ai.py",
            }
        ],
        "model_calls": 2,
        "final_run_ok": True,
    }
    assert ai.result_json(result) == fake.statuses[-1].result


async def test_test_generation_without_a_container_fails_as_unavailable(
    temporal_client: Client,
) -> None:
    script = generation_script()
    script.container = ai.EnsureContainerOutput(running=False, error="the image is missing")
    fake = FakeAI(script)
    job = job_ref(ai.Kind.TESTS)
    async with serving(temporal_client, fake) as queue:
        with pytest.raises(WorkflowFailureError):
            await temporal_client.execute_workflow(
                testgen.TestGenerationWorkflow.run,
                ai.TestGenInput(job, "calc.py", TARGET),
                id=ai.ai_workflow_id(job.kind, job.job_id),
                task_queue=queue,
            )
    assert fake.statuses[-1].error == {
        "code": "container_unavailable",
        "message": "the project's container is not running: the image is missing",
    }
    assert "ai_prepare_run" not in fake.names()
    assert "ai_ask" not in fake.names()


async def test_debug_runs_the_command_and_proposes_a_fix(temporal_client: Client) -> None:
    trace = 'Traceback:\n  File "/workspace/app.py", line 5, in main\nNameError: undefined_name'
    script = Script(
        files=[ai.SourceFile("app.py", 3, SOURCE)],
        answers=[{"explanation": "a typo", "changes": [{"path": "app.py", "content": "fixed\n"}]}],
        container=ai.EnsureContainerOutput(running=True, container_id="c-2"),
        command_output=ExecOutput(1, "", trace, 40, False, False),
    )
    fake = FakeAI(script)
    job = job_ref(ai.Kind.DEBUG)
    async with serving(temporal_client, fake) as queue:
        result = await temporal_client.execute_workflow(
            DebugWorkflow.run,
            ai.DebugInput(job, command=["python3", "app.py"], container=TARGET),
            id=ai.ai_workflow_id(job.kind, job.job_id),
            task_queue=queue,
        )
    (ran,) = fake.inputs("docker_exec")
    assert (ran.container_id, ran.command) == ("c-2", ["python3", "app.py"])
    (gathered,) = fake.inputs("ai_gather")
    assert (gathered.paths, gathered.mentioned_in) == ([], trace)
    (asked,) = fake.inputs("ai_ask")
    assert asked.payload == {"command": ["python3", "app.py"], "exit_code": 1, "error": trace}
    assert fake.statuses[-1].result == {
        "explanation": "a typo",
        "changes": [
            {"path": "app.py", "base_version": 3, "content": "fixed\n", "diff": "diff of app.py"}
        ],
        "refused": {},
        "files": [{"path": "app.py", "version": 3}],
        "model_calls": 1,
        "command": {"argv": ["python3", "app.py"], "exit_code": 1},
        "cached": False,
    }
    assert ai.result_json(result) == fake.statuses[-1].result


async def test_generation_result_has_no_command(temporal_client: Client) -> None:
    answer = {"explanation": "new", "changes": [{"path": "new.py", "content": "x = 1\n"}]}
    fake = FakeAI(Script(files=[], answers=[answer]))
    job = job_ref(ai.Kind.GENERATE)
    async with serving(temporal_client, fake) as queue:
        await temporal_client.execute_workflow(
            CodeGenerationWorkflow.run,
            ai.GenerateInput(job, "make new.py"),
            id=ai.ai_workflow_id(job.kind, job.job_id),
            task_queue=queue,
        )
    assert "ai_gather" not in fake.names()  # no paths: nothing to gather
    assert fake.statuses[-1].result == {
        "explanation": "new",
        "changes": [
            {"path": "new.py", "base_version": 0, "content": "x = 1\n", "diff": "diff of new.py"}
        ],
        "refused": {},
        "files": [],
        "model_calls": 1,
        "cached": False,
    }
