"""Dataclass inputs/outputs of workflows and activities, search attributes and queue names.

One dataclass in, one dataclass out: a field can be added later without breaking callers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import (
    RetryPolicy,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)

DEFAULT_TASK_QUEUE = "vaporform"

PROJECT_ID = SearchAttributeKey.for_keyword("ProjectId")
USER_ID = SearchAttributeKey.for_keyword("UserId")

# Database side effects are cheap and idempotent: retry quickly, for up to a few minutes.
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=30,
)


T = TypeVar("T")


async def call(
    name: str,
    arg: Any,
    result_type: type[T],
    *,
    timeout: timedelta = timedelta(seconds=60),
    retry: RetryPolicy = DB_RETRY,
    heartbeat: timedelta | None = None,
    task_queue: str | None = None,
) -> T:
    """An activity by name (workflows never import activity code), with its result typed."""
    result: T = await workflow.execute_activity(
        name,
        arg,
        result_type=result_type,
        start_to_close_timeout=timeout,
        retry_policy=retry,
        heartbeat_timeout=heartbeat,
        task_queue=task_queue,
    )
    return result


def search_attributes(project_id: str, user_id: str | None = None) -> TypedSearchAttributes:
    pairs = [SearchAttributePair(PROJECT_ID, project_id)]
    if user_id:
        pairs.append(SearchAttributePair(USER_ID, user_id))
    return TypedSearchAttributes(pairs)


@dataclass(frozen=True)
class AuditEventInput:
    event_key: str
    action: str
    project_id: str | None
    actor_id: str | None
    details: dict[str, Any] = field(default_factory=dict)
    target: str | None = None
    outcome: str = "success"
    request_id: str | None = None
    ip: str | None = None
    occurred_at: str | None = None  # ISO 8601; None: when the activity records it


@dataclass(frozen=True)
class AuditEventOutput:
    recorded: bool
