"""An op on its way to a commit: what the submitter sends and the outcome it waits for."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from uuid import UUID

from opentelemetry import trace
from opentelemetry.context import Context

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


def op_span(tracer: trace.Tracer, project_id: UUID, revision: int, seq: int) -> trace.Span:
    """An op's span (started; the caller ends it): a trace per op, as the connection lives too
    long to be one. It is not made the current span: nothing under it reads the context (the
    commit links to it by `span_context`), and attaching and detaching it took 10% of the API's
    time at 250 files x 4 writers, even with tracing off. None is built when nothing records
    spans: its attributes alone were 1% of the API's time."""
    if isinstance(tracer, trace.NoOpTracer):
        return trace.INVALID_SPAN
    return tracer.start_span(
        "collab op",
        kind=trace.SpanKind.SERVER,
        attributes={
            "vaporform.project_id": str(project_id),
            "vaporform.collab.base_revision": revision,
            "vaporform.collab.seq": seq,
        },
    )


def commit_span(tracer: trace.Tracer, batch: list[Submission]) -> trace.Span:
    """A batch's commit span (started; the caller ends it), the child of its first op's span
    and linked to the others'. Its parent is never the writer task's own context, which is
    the first submitter's of long ago. None is built when nothing records spans."""
    if isinstance(tracer, trace.NoOpTracer):
        return trace.INVALID_SPAN
    traced = [sub.span_context for sub in batch if sub.span_context is not None]
    parent = trace.set_span_in_context(trace.NonRecordingSpan(traced[0])) if traced else None
    return tracer.start_span(
        "collab commit",
        context=parent or Context(),
        links=[trace.Link(context) for context in traced[1:]],
        attributes={"vaporform.collab.ops": len(batch)},
    )
