"""An op on its way to a commit: what the submitter sends and the outcome it waits for."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from uuid import UUID

from opentelemetry import trace

from collab import ot


@dataclass(frozen=True, slots=True)
class Outcome:
    revision: int  # the revision the op became
    op: ot.Op  # the op as committed (transformed)
    duplicate: bool = False


@dataclass(slots=True)
class Submission:
    revision: int
    op: ot.Op
    client_key: str
    seq: int
    user_id: UUID | None
    future: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    span_context: trace.SpanContext | None = None  # the span of the op's message, if traced


def fail(sub: Submission, error: Exception) -> None:
    if not sub.future.done():
        sub.future.set_exception(error)
        sub.future.exception()  # the submitter may be gone; never "exception not retrieved"


def succeed(sub: Submission, outcome: Outcome) -> None:
    if not sub.future.done():
        sub.future.set_result(outcome)
