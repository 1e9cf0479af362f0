"""A workflow whose activity fails for good, so the SDK's failure metrics have something to
count (tests/workflows/test_worker_metrics.py). Imports nothing else: the sandbox loads it."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError


@activity.defn(name="test_always_fails")
async def always_fails(reason: str) -> None:
    raise ApplicationError(reason, non_retryable=True)


@workflow.defn(name="TestFailing")
class FailingWorkflow:
    @workflow.run
    async def run(self, reason: str) -> None:
        await workflow.execute_activity(
            always_fails,
            reason,
            start_to_close_timeout=timedelta(seconds=5),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )
