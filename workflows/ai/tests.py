"""`TestGenerationWorkflow`: tests that are checked before anyone sees them.

1. Measure the coverage of the module by the project's existing tests (in its container).
2. Ask for tests; run them in the container's scratch area (tmpfs), each `runs` times in a row.
3. Feed failures and flakes back for at most `rounds` more answers.
4. Keep a test only if it passed every run and executed lines nothing before it did (the
   TestGen-LLM filters: builds, passes, passes reliably, raises coverage).
5. Run the composed file once more; report generated / built / passed / kept and the coverage
   before and after. Kept tests are a proposed change; apply writes them.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from workflows.ai.changes import propose
from workflows.ai.contract import (
    ComposeInput,
    ComposeOutput,
    EnsureContainerOutput,
    GatherInput,
    GatherOutput,
    ParseRunInput,
    PrepareRunInput,
    RunReport,
    TestGenInput,
    TestGenResult,
    TestOutcome,
    TestVerdict,
)
from workflows.ai.errors import CONTAINER_UNAVAILABLE
from workflows.ai.steps import AIJobWorkflow, ask, run_job, running_container
from workflows.containers.contract import ExecInput, ExecOutput
from workflows.shared import call


def module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def test_path_for(path: str) -> str:
    folder, _, name = path.rpartition("/")
    stem = name.removesuffix(".py")
    return f"{folder + '/' if folder else ''}tests/test_{stem}_ai.py"


def percent(lines: set[int], executable: set[int]) -> float:
    return round(100.0 * len(lines & executable) / len(executable), 1) if executable else 0.0


@workflow.defn(name="AITestGeneration")
class TestGenerationWorkflow(AIJobWorkflow):
    @workflow.run
    async def run(self, data: TestGenInput) -> TestGenResult:
        return await run_job(data.job, self._progress, lambda: self._generate(data))

    async def _run(
        self, data: TestGenInput, container: EnsureContainerOutput, prepared: PrepareRunInput
    ) -> RunReport:
        assert container.container_id is not None
        command = await call("ai_prepare_run", prepared, ExecInput)
        ran = await call(
            "docker_exec",
            command,
            ExecOutput,
            timeout=timedelta(seconds=data.run_timeout_s + 30),
            heartbeat=timedelta(seconds=10),
            retry=RetryPolicy(maximum_attempts=1),
            task_queue=container.docker_queue,
        )
        return await call(
            "ai_parse_run",
            ParseRunInput(ran.exit_code, ran.stdout, ran.stderr, ran.timed_out),
            RunReport,
        )

    async def _generate(self, data: TestGenInput) -> TestGenResult:
        progress, job = self._progress, data.job
        progress.stage = "gathering files"
        gathered = await call(
            "ai_gather",
            GatherInput(job.project_id, [data.path], data.context_tokens, with_tests=True),
            GatherOutput,
        )
        if not data.path.endswith(".py") or not any(f.path == data.path for f in gathered.files):
            raise ApplicationError(
                f"{data.path} is not a Python file of the project", type="AINoFiles"
            )
        container, container_id = await running_container(progress, job, data.container)
        existing = [t for t in gathered.tests if t != data.path]
        progress.stage = "measuring coverage before"
        baseline = await self._run(
            data,
            container,
            PrepareRunInput(
                job_id=job.job_id,
                container_id=container_id,
                target=data.path,
                workspace_tests=existing,
                runs=1,
                timeout_s=data.run_timeout_s,
            ),
        )
        if not baseline.ok:
            raise ApplicationError(
                f"the module under test cannot be measured: {baseline.error}",
                type=CONTAINER_UNAVAILABLE,
                non_retryable=True,
            )
        executable = set(baseline.executable)
        covered_before: set[int] = set()
        if existing:
            covered_before = set(baseline.import_lines)
            for outcome in baseline.tests:
                if outcome.passed_runs == outcome.runs:
                    covered_before |= set(outcome.lines)

        sources: dict[str, str] = {}
        outcomes: dict[str, TestOutcome] = {}  # latest outcome per test name
        generated: set[str] = set()
        failures: list[dict[str, Any]] = []
        not_built: dict[str, str] = {}
        import_lines: set[int] = set()
        for round_number in range(data.rounds + 1):
            progress.round = round_number + 1
            payload: dict[str, Any] = {
                "path": data.path,
                "module": module_name(data.path),
                "existing_tests": existing,
            }
            if round_number:
                if not failures:
                    break
                payload["failures"] = failures
            answer = await ask(
                progress, job, f"tests-{round_number}", "tests", gathered.files, payload
            )
            name = f"candidate_{round_number}.py"
            sources[name] = str(answer.answer["code"])
            progress.stage, progress.detail = "running generated tests", name
            report = await self._run(
                data,
                container,
                PrepareRunInput(
                    job_id=job.job_id,
                    container_id=container_id,
                    target=data.path,
                    staged={name: sources[name]},
                    runs=data.runs,
                    timeout_s=data.run_timeout_s,
                ),
            )
            if not report.ok:
                not_built[name] = report.error or "the run failed"
                failures = [{"file": name, "error": not_built[name]}]
                continue
            import_lines |= set(report.import_lines)
            for file, why in report.collect_errors.items():
                not_built[file.rpartition("/")[2]] = why
            failures = [{"error": why} for why in report.collect_errors.values()]
            for outcome in report.tests:
                generated.add(outcome.name)
                outcomes[outcome.name] = outcome
                if outcome.passed_runs < outcome.runs:
                    failures.append(
                        {
                            "test": outcome.name,
                            "passed_runs": outcome.passed_runs,
                            "runs": outcome.runs,
                            "error": outcome.error,
                        }
                    )
        return await self._keep(
            data, container, gathered, sources, outcomes, generated, not_built,
            executable, covered_before, import_lines,
        )  # fmt: skip

    async def _keep(
        self,
        data: TestGenInput,
        container: EnsureContainerOutput,
        gathered: GatherOutput,
        sources: dict[str, str],
        outcomes: dict[str, TestOutcome],
        generated: set[str],
        not_built: dict[str, str],
        executable: set[int],
        covered_before: set[int],
        import_lines: set[int],
    ) -> TestGenResult:
        progress = self._progress
        covered = set(covered_before) | import_lines
        keep: list[list[str]] = []
        verdicts: list[TestVerdict] = []
        for name in sorted(outcomes):
            outcome = outcomes[name]
            file = outcome.file.rpartition("/")[2]
            verdict = "kept"
            if outcome.passed_runs == 0:
                verdict = "failed"
            elif outcome.passed_runs < outcome.runs:
                verdict = "flaky"
            elif not set(outcome.lines) - covered:
                verdict = "no new coverage"
            else:
                covered |= set(outcome.lines)
                keep.append([file, name])
            verdicts.append(
                TestVerdict(name, verdict, outcome.passed_runs, outcome.runs, outcome.error)
            )
        passed = sum(1 for o in outcomes.values() if o.passed_runs == o.runs)
        result = TestGenResult(
            path=data.path,
            generated=len(generated),
            built=len(generated),  # a test that ran was built; files that did not load:
            not_built=not_built,
            passed=passed,
            kept=len(keep),
            tests=verdicts,
            coverage_before=percent(covered_before, executable),
            coverage_after=percent(covered_before, executable),
            coverage_measured_by="sys.settrace line coverage in the project's container",
            changes=[],
            model_calls=progress.model_calls,
        )
        if not keep:
            return result
        progress.stage, progress.detail = "checking the kept tests", ""
        composed = await call("ai_compose_tests", ComposeInput(sources, keep), ComposeOutput)
        final = await self._run(
            data,
            container,
            PrepareRunInput(
                job_id=data.job.job_id,
                container_id=container.container_id or "",
                target=data.path,
                staged={"kept.py": composed.code},
                runs=data.runs,
                timeout_s=data.run_timeout_s,
            ),
        )
        after = set(covered_before)
        if final.ok:
            after |= set(final.import_lines)
            for outcome in final.tests:
                if outcome.passed_runs == outcome.runs:
                    after |= set(outcome.lines)
        else:
            after = covered  # the check run failed to report; fall back to what we measured
        proposal = await propose(
            progress,
            data.job,
            gathered.files,
            {"changes": [{"path": test_path_for(data.path), "content": composed.code}]},
        )
        return replace(
            result,
            coverage_after=percent(after, executable),
            final_run_ok=final.ok and all(o.passed_runs == o.runs for o in final.tests),
            changes=proposal.changes,
        )
