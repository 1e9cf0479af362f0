"""The API's metrics and traces: an ASGI middleware around the app, and `/metrics`.

Every HTTP request is one server span (continuing the caller's `traceparent`) and one
observation of `vaporform_http_request_duration_seconds` labelled by method, route template
and status; the route is the URL rule the request matched (`/api/v1/projects/<project_id>`),
noted by a `before_request` hook, or `unmatched`. WebSockets count connections and frames by
route; what the collaboration socket carries is measured by kind in collab/session.py. The
middleware sits inside the app (`app.asgi_app`), so every server (Granian, uvicorn, hypercorn)
and the tests get it.

`/metrics` answers only `Authorization: Bearer <VAPORFORM_METRICS_TOKEN>` (401 otherwise) and
is 404 when no token is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, cast

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from quart import Blueprint, Quart, Response, g, request, websocket
from quart_schema import security_scheme
from werkzeug.routing import Rule

from vaporform import metrics
from vaporform.tracing import Tracing, extract
from web import gc_pauses
from web.errors import APIError, not_found
from web.openapi import document_errors, document_raw_response
from web.services import services

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TRACING_KEY = "vaporform.tracing"
UNMATCHED = "unmatched"
# Anything else a client may send as a method is one label value, not a new series each.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
POOL_SAMPLE_EVERY_S = 5.0
GC_REPORT_EVERY_S = 1.0
CLIENT_CLOSED = 499
_TRACE_HEADERS = (b"traceparent", b"tracestate")


@dataclass(slots=True)
class _Exchange:
    route: str = UNMATCHED
    # A WebSocket's: the send below this middleware and, once accepted, its counts of frames
    # out (for `frame_sender`) and in (for `frames_in`).
    send: Send | None = None
    frames_out: Any = None
    frames_in: Any = None


# The exchange being served; the route hook fills it in (tasks Quart starts inherit it).
_exchange: ContextVar[_Exchange | None] = ContextVar("vaporform_exchange", default=None)


def _note_route(rule: Rule | None) -> None:
    found = _exchange.get()
    if found is not None and rule is not None:
        found.route = rule.rule


def _trace_headers(scope: Scope) -> dict[str, str]:
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope.get("headers", ())
        if name in _TRACE_HEADERS
    }


class Telemetry:
    """ASGI middleware: a span and a latency observation per request, counts per socket."""

    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method = scope["method"] if scope["method"] in METHODS else "other"
        exchange = _Exchange()
        token = _exchange.set(exchange)
        # Quart answers every error itself: no answer at all means the client went away
        # (nginx's 499), which is not a server error.
        status = CLIENT_CLOSED

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        metrics.HTTP_IN_PROGRESS.inc()
        try:
            with self.tracing.tracer.start_as_current_span(
                method,
                context=extract(_trace_headers(scope)),
                kind=SpanKind.SERVER,
                attributes={"http.request.method": method, "url.path": scope["path"]},
            ) as span:
                try:
                    await self.app(scope, receive, send_status)
                finally:
                    if span.is_recording():
                        span.update_name(f"{method} {exchange.route}")
                        span.set_attribute("http.route", exchange.route)
                        span.set_attribute("http.response.status_code", status)
                        if status >= 500:
                            span.set_status(Status(StatusCode.ERROR))
        finally:
            metrics.HTTP_IN_PROGRESS.dec()
            _exchange.reset(token)
            metrics.HTTP_DURATION.labels(method, exchange.route, str(status)).observe(
                time.perf_counter() - started
            )

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = _Exchange(send=send)
        token = _exchange.set(exchange)
        route: str | None = None
        frames_out: Any = None

        async def counted_send(message: Message) -> None:
            nonlocal route, frames_out
            kind = message["type"]
            if kind == "websocket.send" and frames_out is not None:
                frames_out.inc()
            elif kind == "websocket.accept" and route is None:
                route = exchange.route
                exchange.frames_in = metrics.tally(metrics.WS_FRAMES.labels(route, "in"))
                frames_out = exchange.frames_out = metrics.tally(
                    metrics.WS_FRAMES.labels(route, "out")
                )
                metrics.WS_OPEN.labels(route).inc()
                metrics.WS_OPENED.labels(route).inc()
            await send(message)

        # Frames in are counted where the app reads them (web/socket_reads.py): a wrapper
        # here would be one more coroutine per message, alive while every socket waits.
        try:
            await self.app(scope, receive, counted_send)
        finally:
            _exchange.reset(token)
            if route is not None:
                metrics.WS_OPEN.labels(route).dec()


def frames_in() -> Any:
    """The accepted WebSocket's count of frames in; None before it is accepted."""
    exchange = _exchange.get()
    return None if exchange is None else exchange.frames_in


FrameSender = Callable[[list[str]], Awaitable[None]]


def frame_sender() -> FrameSender:
    """For a WebSocket handler that has accepted: writes text frames straight to the server,
    counted once per call. Quart's `websocket.send` wraps every frame (a yield to the loop,
    the accept check, a context lookup, a signal) and this middleware counts each: 7% of the
    API's time at 200 people in one file, whose socket writes thousands of frames a second."""
    exchange = _exchange.get()
    # create_app always installs the middleware, and it sets both once the socket is accepted.
    if exchange is None or exchange.send is None or exchange.frames_out is None:
        raise RuntimeError("frame_sender needs an accepted WebSocket under the middleware")
    send, frames_out = exchange.send, exchange.frames_out

    async def send_frames(frames: list[str]) -> None:
        for frame in frames:
            await send({"type": "websocket.send", "bytes": None, "text": frame})
        frames_out.inc(len(frames))

    return send_frames


def init_telemetry(app: Quart, tracing: Tracing) -> None:
    """Wrap the app in the middleware; note routes; serve `/metrics`; flush spans at stop."""
    app.extensions[TRACING_KEY] = tracing
    # Quart's own ASGI types are narrower than the plain mappings the middleware passes on.
    cast(Any, app).asgi_app = Telemetry(cast(ASGIApp, app.asgi_app), tracing)

    @app.before_request
    async def _route() -> None:
        _note_route(request.url_rule)

    @app.before_websocket
    async def _websocket_route() -> None:
        _note_route(websocket.url_rule)

    @app.after_request
    async def _request_id(response: Response) -> Response:
        # The request id of the logs and the X-Request-ID header, to find the request's trace.
        span = trace.get_current_span()
        if span.is_recording() and (rid := g.get("request_id")):
            span.set_attribute("vaporform.request_id", rid)
        return response

    sampler: asyncio.Task[None] | None = None

    @app.before_serving
    async def _start_sampling() -> None:
        nonlocal sampler
        sampler = asyncio.create_task(_sample(pools=metrics.multiprocess()))

    @app.after_serving
    async def _stop() -> None:
        if sampler is not None:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        metrics.process_exited()
        await asyncio.to_thread(tracing.shutdown)

    app.register_blueprint(blueprint)


async def _sample(*, pools: bool) -> None:
    """Every second the collector's pauses go into their histogram (web/gc_pauses.py) and
    the hot path's tallies into their counters (metrics.Tally). In
    multiprocess mode one process answers a scrape for all, so every few seconds each
    reports its pools on its own too."""
    sampled = 0.0
    while True:
        gc_pauses.report()
        metrics.flush_tallies()
        if pools and time.monotonic() - sampled >= POOL_SAMPLE_EVERY_S:
            metrics.sample_pools()
            sampled = time.monotonic()
        await asyncio.sleep(GC_REPORT_EVERY_S)


blueprint = Blueprint("metrics", __name__)


@blueprint.get("/metrics")
@security_scheme([])
@document_raw_response(metrics.CONTENT_TYPE, "Prometheus text exposition of the API's metrics")
@document_errors(
    (401, "`unauthorized`: no bearer token, or not the metrics token"),
    (404, "`not_found`: metrics are not served (no VAPORFORM_METRICS_TOKEN)"),
)
async def metrics_exposition() -> Response:
    """Prometheus metrics (docs/observability.md). Not public: the bearer token must be the
    deployment's `VAPORFORM_METRICS_TOKEN`, never a user's access token."""
    token = services().config.telemetry.metrics_token
    if token is None:
        raise not_found()
    if not metrics.authorized(request.headers.get("Authorization"), token):
        raise APIError(
            401,
            "unauthorized",
            "the metrics token is required",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    gc_pauses.report()
    metrics.flush_tallies()  # here, on the loop's thread (see metrics.Tally)
    body = await asyncio.to_thread(metrics.exposition)
    return Response(body, content_type=metrics.CONTENT_TYPE)
