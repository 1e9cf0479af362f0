"""AI job runs recorded when the workflows returned plain dicts replay on the current code, and
their results read as the current result dataclasses.

The histories in `ai_histories/` are whole runs of each AI workflow with the fake activities of
`test_ai_workflow_fakes.py` (review, a failed review, test generation, debug, generate), made
by the code whose workflows returned `dict[str, Any]`. A run still open at a deploy replays on
the new code; a client reading its result, or the job row it stored, gets the same object.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.worker import Replayer

from worker import WORKFLOW_RUNNER
from workflows.ai import contract as ai
from workflows.ai import tests as testgen
from workflows.ai.debug import DebugWorkflow
from workflows.ai.generate import CodeGenerationWorkflow
from workflows.ai.review import CodeReviewWorkflow

HISTORIES = Path(__file__).parent / "ai_histories"
RECORDED = sorted(HISTORIES.glob("*.json"))
RESULTS: dict[str, type[ai.JobResult]] = {
    "AICodeReview": ai.ReviewResult,
    "AITestGeneration": ai.TestGenResult,
    "AIDebug": ai.DebugResult,
    "AICodeGeneration": ai.GenerateResult,
}


def load(path: Path) -> WorkflowHistory:
    raw = json.loads(path.read_text())
    started = raw["events"][0]["workflowExecutionStartedEventAttributes"]
    return WorkflowHistory.from_json(started["workflowId"], raw)


def workflow_type(history: WorkflowHistory) -> str:
    name: str = history.events[0].workflow_execution_started_event_attributes.workflow_type.name
    return name


def completed(history: WorkflowHistory) -> HistoryEvent | None:
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            return event
    return None


def stored_result(history: WorkflowHistory) -> object:
    """The result the run's last `ai_set_status` wrote to the job row (what the API serves)."""
    inputs = [
        e.activity_task_scheduled_event_attributes.input.payloads[0].data
        for e in history.events
        if e.activity_task_scheduled_event_attributes.activity_type.name == "ai_set_status"
    ]
    return json.loads(inputs[-1])["result"]


def test_every_ai_workflow_has_a_history() -> None:
    assert {workflow_type(load(path)) for path in RECORDED} == set(RESULTS)


@pytest.mark.parametrize("path", RECORDED, ids=lambda path: path.stem)
async def test_history_replays(path: Path) -> None:
    replayer = Replayer(
        workflows=[
            CodeReviewWorkflow,
            testgen.TestGenerationWorkflow,
            DebugWorkflow,
            CodeGenerationWorkflow,
        ],
        workflow_runner=WORKFLOW_RUNNER,
    )
    await replayer.replay_workflow(load(path))


@pytest.mark.parametrize("path", RECORDED, ids=lambda path: path.stem)
def test_a_dict_result_reads_as_its_dataclass(path: Path) -> None:
    history = load(path)
    event = completed(history)
    if event is None:  # a failed run has no result, and stored none
        assert stored_result(history) is None
        return
    payload = event.workflow_execution_completed_event_attributes.result.payloads[0]
    kind = RESULTS[workflow_type(history)]
    (typed,) = DataConverter.default.payload_converter.from_payloads([payload], [kind])
    assert isinstance(typed, kind)
    assert ai.result_json(typed) == json.loads(payload.data) == stored_result(history)
