"""The worker's `/metrics` listener: our metrics and the Temporal SDK's, in one answer.

The SDK's own Prometheus exporter (workflow and activity outcomes and latencies, task slots,
polls, and `vaporform_container_start_seconds` that ContainerWorkflow records through the SDK's
replay-safe meter) runs inside its Rust core and serves no authentication, so it is bound to a
loopback port of its own and read from here; this listener (`VAPORFORM_WORKER_METRICS_HOST` /
`_PORT`) answers only the bearer token `VAPORFORM_METRICS_TOKEN`, as the API's `/metrics` does.
Before each answer the `before_scrape` callables run (on a thread: the Docker census blocks),
so gauges such as containers by state are current without a poller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Sequence
from types import TracebackType

import httpx
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from vaporform import metrics

log = logging.getLogger("vaporform.metrics")

# The SDK's metric families that deploy/prometheus/alerts.yml and the Grafana dashboard use
# (tests check the rules name no others, and that a worker serves each of them).
TEMPORAL_FAMILIES = (
    "temporal_workflow_completed",
    "temporal_workflow_failed",
    "temporal_workflow_endtoend_latency",
    "temporal_activity_execution_failed",
    "temporal_activity_execution_latency",
    "temporal_workflow_task_schedule_to_start_latency",
    "temporal_activity_schedule_to_start_latency",
)
MAX_REQUEST_BYTES = 16 * 1024
READ_TIMEOUT_S = 5.0
TEMPORAL_TIMEOUT_S = 2.0


def free_loopback_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def temporal_runtime(bind_address: str) -> Runtime:
    """A Temporal runtime whose metrics are served in Prometheus' conventions (counters end in
    `_total`, durations in seconds) on `bind_address`, for `Client.connect(runtime=...)`."""
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=bind_address,
                counters_total_suffix=True,
                durations_as_seconds=True,
                histogram_bucket_overrides={
                    metrics.CONTAINER_START: list(metrics.CONTAINER_START_BUCKETS)
                },
            )
        )
    )


class WorkerMetrics:
    """`async with WorkerMetrics(...) as server:` listens until the block ends."""

    def __init__(
        self,
        host: str,
        port: int,
        token: str,
        *,
        temporal_url: str | None = None,
        before_scrape: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.host = host
        self.port = port
        self._token = token
        self._temporal_url = temporal_url
        self._before_scrape = list(before_scrape)
        self._server: asyncio.Server | None = None
        self._http = httpx.AsyncClient(timeout=TEMPORAL_TIMEOUT_S)

    async def __aenter__(self) -> WorkerMetrics:
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=MAX_REQUEST_BYTES
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("worker metrics listening", extra={"host": self.host, "port": self.port})
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self._http.aclose()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            status, content_type, body = await self._answer(head.decode("latin-1"))
            reason = {200: "OK", 401: "Unauthorized", 404: "Not Found", 405: "Not Allowed"}
            extra = 'WWW-Authenticate: Bearer realm="metrics"\r\n' if status == 401 else ""
            writer.write(
                f"HTTP/1.1 {status} {reason[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a client that does not send one small request in time gets nothing
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, head: str) -> tuple[int, str, bytes]:
        request_line, *header_lines = head.split("\r\n")
        method, _, rest = request_line.partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        if path != "/metrics":
            return 404, "text/plain", b"not found\n"
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"GET only\n"
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if not metrics.authorized(headers.get("authorization"), self._token):
            return 401, "text/plain", b"the metrics token is required\n"
        ours = await asyncio.to_thread(self._ours)
        return 200, metrics.CONTENT_TYPE, ours + await self._temporal()

    def _ours(self) -> bytes:
        for prepare in self._before_scrape:
            try:
                prepare()
            except Exception:  # a gauge that cannot be refreshed keeps its last value
                log.exception("refreshing a metric failed")
        return metrics.exposition()

    async def _temporal(self) -> bytes:
        if self._temporal_url is None:
            return b""
        try:
            response = await self._http.get(self._temporal_url)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("the Temporal SDK's metrics did not answer", extra={"error": str(exc)})
            return b""
        return response.content
