"""Traces reach an OTLP collector: request -> outbox -> workflow -> activity with their parent
links, the collaboration submit path, and the trace ids in the JSON logs.

The stack is this module's own (database, task queue, worker, relay, API), so no other relay
of the session can take its outbox rows and start their workflows untraced.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto
from prometheus_client import REGISTRY
from temporalio.testing import WorkflowEnvironment

import worker as worker_module
from files.factory import build_filesystem
from store import db
from tests.collab.conftest import WSClient
from tests.collab.editing import owner_agreed, room_of
from tests.conftest import Server, api_client, fresh_database, serving
from tests.otlp_collector import Collector, ReceivedSpan
from tests.support import create_project, register, wait_until
from vaporform.config import Config
from vaporform.logs import JSONFormatter
from vaporform.outbox_relay import OutboxRelay
from vaporform.settings.telemetry import TelemetrySettings
from vaporform.tracing import Tracing
from web.telemetry import TRACING_KEY


@dataclass
class Stack:
    server: Server
    api: Tracing
    worker: Tracing
    collector: Collector

    async def spans(self) -> list[ReceivedSpan]:
        """Everything received, once both processes' ended spans are exported."""
        await asyncio.to_thread(self.api.flush)
        await asyncio.to_thread(self.worker.flush)
        return self.collector.received()


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with Collector() as found:
        yield found


@pytest.fixture(scope="module")
async def traced_config(config: Config, run_id: str, collector: Collector) -> AsyncIterator[Config]:
    async with fresh_database(f"vaporform_test_{run_id}_traces") as url:
        yield replace(
            config,
            database_url=url,
            task_queue=f"{config.task_queue}-traces",
            telemetry=TelemetrySettings(otlp_traces_endpoint=collector.endpoint),
        )


@pytest.fixture(scope="module")
async def stack(
    traced_config: Config, temporal_env: WorkflowEnvironment, collector: Collector
) -> AsyncIterator[Stack]:
    """The worker as `vaporform worker` builds it (traced client, worker, relay) and an API."""
    tracing = Tracing("vaporform-worker", collector.endpoint)
    client = await type(temporal_env.client).connect(
        temporal_env.client.service_client.config.target_host,
        namespace=temporal_env.client.namespace,
        interceptors=tracing.interceptors(),
    )
    pool = await db.create_pool(traced_config.database_url, min_size=1, max_size=5)
    files = build_filesystem(traced_config, pool)
    queue = traced_config.task_queue
    try:
        with ThreadPoolExecutor(max_workers=4) as executor:
            async with worker_module.build_worker(client, pool, queue, executor, files=files):
                stop = asyncio.Event()
                relay = OutboxRelay(pool, client, queue, tracer=tracing.tracer)
                relaying = asyncio.create_task(relay.run(stop))
                try:
                    async with serving(traced_config) as server:
                        yield Stack(server, server.app.extensions[TRACING_KEY], tracing, collector)
                finally:
                    stop.set()
                    await relaying
    finally:
        await pool.close()
        await asyncio.to_thread(tracing.shutdown)


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(stack.server) as client:
        yield client


def one(spans: list[ReceivedSpan], name: str, **where: object) -> ReceivedSpan:
    found = [
        s for s in spans if s.name == name and all(getattr(s, k) == v for k, v in where.items())
    ]
    assert len(found) == 1, (name, where, [(s.name, s.span_id, s.parent_span_id) for s in spans])
    return found[0]


async def test_create_project_is_one_trace_down_to_the_activity(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    owner = await register(api, "traced")
    created = await api.post("/api/v1/projects", json={"name": "traced"}, headers=owner.headers)
    assert created.status_code == 201, created.text
    request_id = created.headers["X-Request-ID"]

    def request_span(spans: list[ReceivedSpan]) -> ReceivedSpan | None:
        return next(
            (s for s in spans if s.attributes.get("vaporform.request_id") == request_id), None
        )

    async def activity_ran() -> bool:
        spans = await stack.spans()
        root = request_span(spans)
        return root is not None and any(
            s.trace_id == root.trace_id and s.name == "RunActivity:record_audit_event"
            for s in spans
        )

    await wait_until(activity_ran, timeout=30, what="the audit activity's span")
    spans = await stack.spans()
    root = request_span(spans)
    assert root is not None
    assert root.name == "POST /api/v1/projects"
    assert root.service == "vaporform-api"
    assert root.kind == SpanProto.SPAN_KIND_SERVER
    assert root.parent_span_id == ""
    assert root.attributes["http.route"] == "/api/v1/projects"
    assert root.attributes["http.response.status_code"] == 201
    trace = [s for s in spans if s.trace_id == root.trace_id]
    relayed = one(trace, "outbox project_created", parent_span_id=root.span_id)
    assert relayed.service == "vaporform-worker"
    started = one(trace, "StartWorkflow:ProjectCreated", parent_span_id=relayed.span_id)
    # The SDK's interceptor ends workflow spans at once (a workflow replays): what the
    # workflow does hangs off the span that started it, beside its RunWorkflow span.
    one(trace, "RunWorkflow:ProjectCreated", parent_span_id=started.span_id)
    scheduled = one(trace, "StartActivity:record_audit_event", parent_span_id=started.span_id)
    activity = one(trace, "RunActivity:record_audit_event", parent_span_id=scheduled.span_id)
    assert activity.service == "vaporform-worker"


async def test_a_callers_traceparent_is_continued(stack: Stack, api: httpx.AsyncClient) -> None:
    owner = await register(api, "caller")
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    listed = await api.get(
        "/api/v1/projects",
        headers={**owner.headers, "traceparent": f"00-{trace_id}-{parent_id}-01"},
    )
    assert listed.status_code == 200

    async def arrived() -> bool:
        return any(s.trace_id == trace_id for s in await stack.spans())

    await wait_until(arrived, what="the request's span")
    span = one(await stack.spans(), "GET /api/v1/projects", trace_id=trace_id)
    assert span.parent_span_id == parent_id


async def test_an_op_is_traced_through_its_commit(stack: Stack, api: httpx.AsyncClient) -> None:
    owner = await register(api, "editor")
    pid = str((await create_project(api, owner))["id"])
    put = await api.put(
        f"/api/v1/projects/{pid}/files/a.txt", json={"content": "abc"}, headers=owner.headers
    )
    assert put.status_code == 201, put.text
    socket = await WSClient.connect(stack.server, pid, owner.access_token)
    try:
        await socket.join("a.txt")
        ref = await socket.send("op", {"path": "a.txt", "revision": 0, "op": [3, "d"], "seq": 1})
        assert (await socket.reply(ref))["type"] == "ack"
    finally:
        await socket.close()

    def op_span(spans: list[ReceivedSpan]) -> ReceivedSpan | None:
        return next(
            (
                s
                for s in spans
                if s.name == "collab op" and s.attributes.get("vaporform.project_id") == pid
            ),
            None,
        )

    async def committed() -> bool:
        spans = await stack.spans()
        op = op_span(spans)
        return op is not None and any(s.parent_span_id == op.span_id for s in spans)

    await wait_until(committed, what="the op's commit span")
    spans = await stack.spans()
    op = op_span(spans)
    assert op is not None
    assert op.parent_span_id == ""  # one trace per op, not one per connection
    assert op.attributes["vaporform.collab.revision"] == 1
    commit = one(spans, "collab commit", parent_span_id=op.span_id)
    assert commit.trace_id == op.trace_id
    assert commit.attributes["vaporform.collab.ops"] == 1


async def test_an_op_sent_to_its_files_owner_is_traced_through_the_commit_there(
    stack: Stack, api: httpx.AsyncClient, traced_config: Config
) -> None:
    owner = await register(api, "writer")
    pid = str((await create_project(api, owner))["id"])
    put = await api.put(
        f"/api/v1/projects/{pid}/files/b.txt", json={"content": "abc"}, headers=owner.headers
    )
    assert put.status_code == 201, put.text
    forwarded = ("vaporform_collab_forwarded_ops_total", {"outcome": "committed"})
    before = REGISTRY.get_sample_value(*forwarded) or 0.0
    async with serving(traced_config) as second:
        servers = (stack.server, second)
        sockets = [await WSClient.connect(s, pid, owner.access_token) for s in servers]
        try:
            for socket in sockets:
                await socket.join("b.txt")
            await wait_until(owner_agreed(servers, pid, "b.txt"), what="one owner of b.txt")
            first = room_of(servers[0], pid)
            writer = sockets[1] if first.owner("b.txt") == first.hub.node_id else sockets[0]
            op = {"path": "b.txt", "revision": 0, "op": [3, "d"], "seq": 1}
            assert (await writer.reply(await writer.send("op", op)))["type"] == "ack"

            # The ack leaves as soon as the op reaches the writer's node, maybe before the
            # owner's answer: counted once that is in.
            async def answered() -> bool:
                return REGISTRY.get_sample_value(*forwarded) == before + 1

            await wait_until(answered, what="the owner's answer")
        finally:
            for socket in sockets:
                await socket.close()
        await asyncio.to_thread(second.app.extensions[TRACING_KEY].flush)

    def ops(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
        return [
            s
            for s in spans
            if s.name == "collab op" and s.attributes.get("vaporform.project_id") == pid
        ]

    async def committed() -> bool:
        spans = await stack.spans()
        return any(s.parent_span_id == o.span_id for o in ops(spans) for s in spans)

    await wait_until(committed, what="the forwarded op's commit span")
    spans = await stack.spans()
    [sent] = ops(spans)
    commit = one(spans, "collab commit", parent_span_id=sent.span_id)
    assert commit.trace_id == sent.trace_id
    assert commit.attributes["vaporform.collab.ops"] == 1


class _Lines(logging.Handler):
    """Formats each record as it is emitted, inside the context that wrote it."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JSONFormatter())
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


async def test_the_logs_carry_the_trace_id(stack: Stack, api: httpx.AsyncClient) -> None:
    lines = _Lines()
    logger = logging.getLogger("vaporform.web")
    logger.addHandler(lines)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        request_id = f"logs-{uuid.uuid4().hex}"
        response = await api.get("/healthz", headers={"X-Request-ID": request_id})
        assert response.status_code == 200
    finally:
        logger.removeHandler(lines)
        logger.setLevel(previous)
    logged = [line for line in lines.lines if line.get("request_id") == request_id]
    assert logged, lines.lines

    async def arrived() -> bool:
        return any(
            s.attributes.get("vaporform.request_id") == request_id for s in await stack.spans()
        )

    await wait_until(arrived, what="the request's span")
    span = next(
        s for s in await stack.spans() if s.attributes.get("vaporform.request_id") == request_id
    )
    assert logged[-1]["trace_id"] == span.trace_id
    assert logged[-1]["span_id"] == span.span_id
