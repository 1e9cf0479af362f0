"""OpenTelemetry traces: one tracer provider per app or worker, exported by OTLP over HTTP.

With an endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`, or `..._TRACES_ENDPOINT`) spans are batched
to it; the exporter honours the other `OTEL_EXPORTER_OTLP_*` variables (headers, timeout), the
provider `OTEL_TRACES_SAMPLER` and `OTEL_RESOURCE_ATTRIBUTES`, and `OTEL_SERVICE_NAME` beats
the default service name. Without one the tracer records nothing, and a caller's
`traceparent` still passes through to the logs.

The provider is handed to what needs it (the app, the Temporal client's `TracingInterceptor`,
the collaboration hub, the outbox relay), never set as OpenTelemetry's global: two apps in one
process (the tests) each keep their own. Context crosses process boundaries as W3C trace
context: HTTP headers in, Temporal headers (the interceptor), and outbox rows (`inject` when
the row is written, `extract` when the relay starts its workflow).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

PROPAGATOR = TraceContextTextMapPropagator()


class Tracing:
    def __init__(self, service: str, endpoint: str | None) -> None:
        self.service = service
        self.endpoint = endpoint
        self._provider: Any = None
        if endpoint is None:
            self.tracer: trace.Tracer = trace.NoOpTracer()
            return
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # Attributes given here override the environment's: name the service only if it
        # does not.
        given = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service}
        provider = TracerProvider(resource=Resource.create(given))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        self._provider = provider
        self.tracer = provider.get_tracer("vaporform")

    @property
    def enabled(self) -> bool:
        return self._provider is not None

    def interceptors(self) -> list[Any]:
        """For `Client.connect(interceptors=...)`: spans for starting workflows, and (on a
        worker built from that client) for running workflows and activities."""
        if not self.enabled:
            return []
        from temporalio.contrib.opentelemetry import TracingInterceptor

        return [TracingInterceptor(self.tracer)]

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Export every span that has ended; True when done within the timeout."""
        if self._provider is None:
            return True
        return bool(self._provider.force_flush(int(timeout_s * 1000)))

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()
            self._provider = None
            self.tracer = trace.NoOpTracer()


def inject() -> dict[str, str]:
    """The current span's context as W3C headers (`traceparent`), to store or send."""
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier)
    return carrier


def extract(carrier: Mapping[str, str] | None) -> Context:
    """The context `inject` wrote (an empty context when there is none)."""
    return PROPAGATOR.extract(dict(carrier or {}))


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, for the logs; None outside any."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
