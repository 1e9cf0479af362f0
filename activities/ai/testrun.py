"""Running generated tests in the project's container: the container itself (as
`POST .../container` starts it), the exec that stages and runs the runner, its report, and the
one test module of the tests that are kept."""

from __future__ import annotations

import ast
import base64
import json
from pathlib import Path

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.ai.container_runner import BOOTSTRAP, MARK
from vaporform.container_client import (
    ContainerClient,
    ContainerHost,
    ContainerUnavailable,
    InvalidImage,
)
from workflows.ai.contract import (
    SCRATCH_ROOT,
    ComposeInput,
    ComposeOutput,
    EnsureContainerInput,
    EnsureContainerOutput,
    ParseRunInput,
    PrepareRunInput,
    RunReport,
    TestOutcome,
)
from workflows.ai.errors import INVALID_ANSWER
from workflows.containers.contract import ContainerSpec, ExecInput
from workflows.containers.names import Status

RUNNER_SOURCE = Path(__file__).with_name("container_runner.py").read_text()


class TestRunActivities:
    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn(name="ai_ensure_container")
    async def ensure_container(self, data: EnsureContainerInput) -> EnsureContainerOutput:
        """The project's container, through the client the API uses (the image check, the warm
        pool): one that runs is taken as it is, whatever its user started it with; otherwise
        the default container of the job's image is started."""
        target = data.target
        containers = ContainerClient(
            self._client,
            activity.info().task_queue,
            ContainerHost(target.docker_queue, target.idle_timeout_s, target.health_timeout_s),
        )
        try:
            status = await containers.ensure(
                data.project_id,
                data.user_id,
                ContainerSpec(image=target.image),
                reuse_running=True,
            )
        except InvalidImage as exc:
            return EnsureContainerOutput(running=False, error=str(exc))
        except ContainerUnavailable as exc:  # Temporal retries us
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
