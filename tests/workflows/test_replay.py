"""Recorded histories replay against the current workflow code.

A workflow still running in production replays its history on every worker restart; a code
change that issues other commands (another activity, another order, a timer more or less)
fails that replay with a nondeterminism error. These histories, recorded from real runs by
`record_histories.py`, catch such a change in CI. A change that must alter the commands keeps
the old path behind `workflow.patched(...)`, and these histories still pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from worker import WORKFLOW_RUNNER
from workflows.containers.entity import ContainerWorkflow
from workflows.containers.pool import ContainerPoolWorkflow
from workflows.files.versioning import VersioningWorkflow

HISTORIES = Path(__file__).parent / "histories"
RECORDED = sorted(HISTORIES.glob("*.json"))


def load(path: Path) -> WorkflowHistory:
    """The history in `path` (as `WorkflowHistory.to_json` wrote it), under the workflow id of
    its first event."""
    raw = json.loads(path.read_text())
    started = raw["events"][0]["workflowExecutionStartedEventAttributes"]
    return WorkflowHistory.from_json(started.get("workflowId", path.stem), raw)


def workflow_type(path: Path) -> str:
    raw = json.loads(path.read_text())
    name: str = raw["events"][0]["workflowExecutionStartedEventAttributes"]["workflowType"]["name"]
    return name


def test_every_guarded_workflow_has_a_history() -> None:
    assert {workflow_type(path) for path in RECORDED} == {
        "ContainerWorkflow",
        "ContainerPool",
        "Versioning",
    }


@pytest.mark.parametrize("path", RECORDED, ids=lambda path: path.stem)
async def test_history_replays(path: Path) -> None:
    replayer = Replayer(
        workflows=[ContainerWorkflow, ContainerPoolWorkflow, VersioningWorkflow],
        workflow_runner=WORKFLOW_RUNNER,
    )
    await replayer.replay_workflow(load(path))
