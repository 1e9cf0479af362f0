"""Dataclasses and names of the AI job workflows and their activities.

One dataclass in, one dataclass out. Activities are called by name from the workflows, so no
provider, database or Docker code is imported into the workflow sandbox. The job results are
stored (and served) as the JSON of `result_json`, which has the keys of their fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Where generated tests live inside the container: tmpfs, so nothing reaches the workspace
# (which the file system imports as versions) until someone applies the job.
SCRATCH_ROOT = "/tmp/vaporform-ai"


class Kind:
    REVIEW = "review"
    TESTS = "tests"
    DEBUG = "debug"
    GENERATE = "generate"


class JobStatus:
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def ai_workflow_id(kind: str, job_id: str) -> str:
    return f"ai-{kind}-{job_id}"


# --- workflow inputs ----------------------------------------------------------------------


@dataclass(frozen=True)
class JobRef:
    job_id: str
    project_id: str
    user_id: str
    kind: str


@dataclass(frozen=True)
class ContainerTarget:
    """Which container runs the job's commands (as `POST .../container` would start it)."""

    docker_queue: str
    image: str
    idle_timeout_s: int = 1800
    health_timeout_s: float = 20.0


@dataclass(frozen=True)
class ReviewInput:
    job: JobRef
    paths: list[str] | None = None
    context_tokens: int = 60_000


@dataclass(frozen=True)
class TestGenInput:
    job: JobRef
    path: str
    container: ContainerTarget
    context_tokens: int = 60_000
    rounds: int = 2
    runs: int = 5
    run_timeout_s: float = 120.0


@dataclass(frozen=True)
class DebugInput:
    job: JobRef
    command: list[str] | None = None
    error: str | None = None
    paths: list[str] = field(default_factory=list)
    container: ContainerTarget | None = None
    context_tokens: int = 60_000
    command_timeout_s: float = 60.0


@dataclass(frozen=True)
class GenerateInput:
    job: JobRef
    prompt: str
    paths: list[str] = field(default_factory=list)
    context_tokens: int = 60_000


@dataclass
class AIProgress:
    """What a running job is doing (the `progress` query)."""

    stage: str = "queued"
    detail: str = ""
    round: int = 0
    model_calls: int = 0


# --- activity inputs and outputs ------------------------------------------------------------


@dataclass(frozen=True)
class StatusInput:
    job: JobRef
    status: str
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class SourceFile:
    path: str
    version: int
    content: str


@dataclass(frozen=True)
class GatherInput:
    project_id: str
    # None: every text file of the project, smallest first, within the token budget.
    paths: list[str] | None = None
    token_budget: int = 60_000
    # Project paths named in this text (a traceback) are gathered too.
    mentioned_in: str | None = None
    with_tests: bool = False


@dataclass(frozen=True)
class GatherOutput:
    files: list[SourceFile] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # over the budget, binary or missing
    tests: list[str] = field(default_factory=list)  # existing test files of the project


@dataclass(frozen=True)
class FindingData:
    path: str
    line_start: int
    line_end: int
    severity: str
    category: str
    message: str
    suggestion: str | None = None
    source: str = "model"
    file_version: int = 0


@dataclass(frozen=True)
class LintInput:
    files: list[SourceFile]


@dataclass(frozen=True)
class LintOutput:
    findings: list[FindingData] = field(default_factory=list)


@dataclass(frozen=True)
class AskInput:
    job: JobRef
    step: str  # unique within the job: usage is recorded once per (job, step)
    task: str  # a Kind
    files: list[SourceFile]
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AskOutput:
    answer: dict[str, Any]
    cached: bool
    calls: int
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class SaveFindingsInput:
    job: JobRef
    findings: list[FindingData]


@dataclass(frozen=True)
class ProposedFile:
    path: str
    content: str


@dataclass(frozen=True)
class ProposeInput:
    project_id: str
    files: list[ProposedFile]


@dataclass(frozen=True)
class Change:
    path: str
    base_version: int  # 0: a new file
    content: str
    # Shown to people; applying needs only the three fields above, so a result written without
    # it (by a client of the database, or an older worker) still applies.
    diff: str = ""


@dataclass(frozen=True)
class ProposeOutput:
    changes: list[Change] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # path -> why


@dataclass(frozen=True)
class EnsureContainerInput:
    project_id: str
    user_id: str
    target: ContainerTarget


@dataclass(frozen=True)
class EnsureContainerOutput:
    running: bool
    container_id: str | None = None
    docker_queue: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class PrepareRunInput:
    """One run of the test runner in the container (see activities/ai/container_runner.py)."""

    job_id: str
    container_id: str
    target: str  # project path of the module under test
    workspace_tests: list[str] = field(default_factory=list)  # existing tests, project paths
    staged: dict[str, str] = field(default_factory=dict)  # scratch file name -> content
    runs: int = 1
    test_timeout_s: float = 10.0
    timeout_s: float = 120.0  # the whole run


@dataclass(frozen=True)
class TestOutcome:
    file: str
    name: str
    passed_runs: int
    runs: int
    error: str | None = None
    lines: list[int] = field(default_factory=list)  # target lines this test executed


@dataclass(frozen=True)
class RunReport:
    ok: bool  # the runner ran and reported; False: see `error`
    error: str | None = None
    executable: list[int] = field(default_factory=list)
    import_lines: list[int] = field(default_factory=list)
    tests: list[TestOutcome] = field(default_factory=list)
    collect_errors: dict[str, str] = field(default_factory=dict)  # file -> why it did not load


@dataclass(frozen=True)
class ParseRunInput:
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool


@dataclass(frozen=True)
class ComposeInput:
    sources: dict[str, str]  # candidate file name -> code
    keep: list[list[str]]  # [file, test name] pairs, in order


@dataclass(frozen=True)
class ComposeOutput:
    code: str


# --- job results --------------------------------------------------------------------------

# On a field whose None means "not there": `result_json` leaves the key out.
OMIT_NONE = {"omit_none": True}


@dataclass(frozen=True)
class FileRef:
    path: str
    version: int


@dataclass(frozen=True)
class DroppedFinding:
    finding: dict[str, Any]  # as reported, without a file version (`finding_public`)
    reason: str


@dataclass(frozen=True)
class ReviewResult:
    findings: list[FindingData]
    dropped: list[DroppedFinding]
    ruff_findings: int
    files: list[FileRef]
    skipped: list[str]
    cached: bool
    model_calls: int


@dataclass(frozen=True)
class TestVerdict:
    name: str
    verdict: str  # kept | failed | flaky | no new coverage
    passed_runs: int
    runs: int
    error: str | None = None


@dataclass(frozen=True)
class TestGenResult:
    path: str
    generated: int
    built: int
    not_built: dict[str, str]
    passed: int
    kept: int
    tests: list[TestVerdict]
    coverage_before: float
    coverage_after: float
    coverage_measured_by: str
    changes: list[Change]
    model_calls: int
    # Whether the composed file passed its check run; only when tests were kept.
    final_run_ok: bool | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class Proposal:
    """What the jobs that propose file changes have in common."""

    explanation: str
    changes: list[Change]
    refused: dict[str, str]
    files: list[FileRef]
    model_calls: int


@dataclass(frozen=True)
class GenerateResult(Proposal):
    cached: bool = False


@dataclass(frozen=True)
class CommandRun:
    argv: list[str]
    exit_code: int | None


@dataclass(frozen=True)
class DebugResult(Proposal):
    command: CommandRun | None = None
    cached: bool = False


JobResult = ReviewResult | TestGenResult | DebugResult | GenerateResult


def result_json(result: JobResult) -> dict[str, Any]:
    """The JSON object of a job result: the object Temporal's converter makes of it, less the
    keys `OMIT_NONE` leaves out."""
    found: dict[str, Any] = _json(result)
    return found


def _json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _json(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not (f.metadata.get("omit_none") and getattr(value, f.name) is None)
        }
    if isinstance(value, list | tuple):
        return [_json(item) for item in value]
    if isinstance(value, dict):
        return {key: _json(item) for key, item in value.items()}
    return value
