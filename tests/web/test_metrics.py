"""`/metrics` of the API: the histograms move after a scripted run of the main routes, labels
are route templates, and nobody without the metrics token reads them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY, Histogram
from prometheus_client.parser import text_string_to_metric_families

from tests.collab.conftest import WSClient
from tests.conftest import Server, api_client, free_port, serving
from tests.support import (
    api_process_env,
    assert_error,
    create_project,
    register,
    spawn_api,
    wait_for_api,
    wait_until,
)
from vaporform import metrics
from vaporform.config import Config, load_config
from vaporform.settings.env import ConfigError
from vaporform.settings.telemetry import TelemetrySettings

TOKEN = "metrics-token-for-tests-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
FILE_ROUTE = "/api/v1/projects/<project_id>/files/<path:path>"
COLLAB_ROUTE = "/api/v1/projects/<project_id>/collab"


@pytest.fixture(scope="module")
async def metered(config: Config, worker: None) -> AsyncIterator[Server]:
    """An API server whose deployment set a metrics token."""
    with_token = replace(config, telemetry=TelemetrySettings(metrics_token=TOKEN))
    async with serving(with_token) as found:
        yield found


@pytest.fixture
async def client(metered: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(metered) as found:
        yield found


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics", headers=BEARER)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples `name` whose labels include `labels`."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def label_values(text: str, name: str, label: str) -> set[str]:
    return {
        sample.labels[label]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and label in sample.labels
    }


async def scripted_run(client: httpx.AsyncClient, metered: Server) -> str:
    """Register, create and list projects, write and read a file, edit it live; the project id."""
    owner = await register(client, "metered")
    pid = str((await create_project(client, owner))["id"])
    assert (await client.get("/api/v1/projects", headers=owner.headers)).status_code == 200
    put = await client.put(
        f"/api/v1/projects/{pid}/files/src/app.py",
        json={"content": "print('hi')\n"},
        headers=owner.headers,
    )
    assert put.status_code == 201, put.text
    read = await client.get(f"/api/v1/projects/{pid}/files/src/app.py", headers=owner.headers)
    assert read.status_code == 200
    history = await client.get(
        f"/api/v1/projects/{pid}/history", params={"path": "src/app.py"}, headers=owner.headers
    )
    assert history.status_code == 200
    assert (await client.get("/no/such/route")).status_code == 404
    socket = await WSClient.connect(metered, pid, owner.access_token)
    try:
        await socket.join("src/app.py")
        ref = await socket.send(
            "op", {"path": "src/app.py", "revision": 0, "op": ["# live\n", 12], "seq": 1}
        )
        assert (await socket.reply(ref))["type"] == "ack"
        await socket.send_raw("not json")
        await socket.wait_for(lambda m: m["type"] == "error", what="the error for a bad frame")
    finally:
        await socket.close()
    return pid


async def test_histograms_move_after_the_main_routes(
    client: httpx.AsyncClient, metered: Server
) -> None:
    before = await scrape(client)
    pid = await scripted_run(client, metered)
    after = await scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    http = "vaporform_http_request_duration_seconds_count"
    assert moved(http, method="POST", route="/api/v1/auth/register", status="201") >= 1
    assert moved(http, method="POST", route="/api/v1/projects", status="201") >= 1
    assert moved(http, method="GET", route="/api/v1/projects", status="200") >= 1
    assert moved(http, method="PUT", route=FILE_ROUTE, status="201") >= 1
    assert moved(http, method="GET", route=FILE_ROUTE, status="200") >= 1
    assert moved(http, method="GET", route="unmatched", status="404") >= 1
    # The sum moves with the count, and the buckets are there for p95.
    assert moved("vaporform_http_request_duration_seconds_sum", route=FILE_ROUTE) > 0
    le_200ms = value(after, "vaporform_http_request_duration_seconds_bucket", le="0.2")
    assert le_200ms > 0
    # Route templates only: no label carries a project id or a raw path.
    routes = label_values(after, "vaporform_http_request_duration_seconds_count", "route")
    assert FILE_ROUTE in routes
    assert not [r for r in routes if pid in r or "src/app.py" in r]

    assert moved("vaporform_websocket_opened_total", route=COLLAB_ROUTE) >= 1
    assert moved("vaporform_websocket_frames_total", route=COLLAB_ROUTE, direction="in") >= 3
    assert moved("vaporform_websocket_frames_total", route=COLLAB_ROUTE, direction="out") >= 2
    assert value(after, "vaporform_websocket_connections", route=COLLAB_ROUTE) >= 0
    handled = "vaporform_collab_message_duration_seconds_count"
    assert moved(handled, kind="join") >= 1
    assert moved(handled, kind="op") >= 1
    assert moved(handled, kind="invalid") >= 1
    assert moved("vaporform_collab_messages_sent_total", kind="joined") >= 1
    assert moved("vaporform_collab_messages_sent_total", kind="ack") >= 1
    assert moved("vaporform_collab_errors_total", code="invalid_json") >= 1
    assert moved("vaporform_collab_ops_committed_total") >= 1
    assert moved("vaporform_collab_commit_duration_seconds_count") >= 1

    assert value(after, "vaporform_db_pool_max_connections", pool="api") > 0
    in_use = label_values(after, "vaporform_db_pool_connections", "state")
    assert in_use == {"in_use", "idle"}
    assert value(after, "vaporform_db_pool_max_connections", pool="collab") > 0


async def test_the_metrics_endpoint_refuses_the_public(
    client: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    refused = await client.get("/metrics")
    assert_error(refused, 401, "unauthorized")
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert "vaporform_" not in refused.text
    wrong = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"})
    assert_error(wrong, 401, "unauthorized")
    basic = await client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})
    assert_error(basic, 401, "unauthorized")
    # A user's access token is not the metrics token.
    user = await register(client, "curious")
    assert_error(await client.get("/metrics", headers=user.headers), 401, "unauthorized")
    # A deployment without a token serves no metrics at all (the session's server).
    assert_error(await http.get("/metrics", headers=BEARER), 404, "not_found")


async def test_several_api_processes_report_as_one(config: Config, tmp_path: Path) -> None:
    """`vaporform api --workers 2`: whichever process answers a scrape, it counts the
    requests of both (prometheus-client's multiprocess mode)."""
    port = free_port()
    folder = tmp_path / "prometheus"
    env = {
        **api_process_env(config, port),
        "VAPORFORM_METRICS_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
    }
    process = await spawn_api(env, "--workers", "2")
    base = f"http://127.0.0.1:{port}"

    async def get(path: str, **headers: str) -> httpx.Response:
        # A connection per request, so the kernel spreads them over both processes.
        async with httpx.AsyncClient(base_url=base, timeout=10) as fresh:
            return await fresh.get(path, headers=headers)

    async def both_serving() -> bool:
        await get("/healthz")
        # Files are per process id; the supervisor (`process`) writes one too but serves nothing.
        pids = {p.stem.rsplit("_", 1)[-1] for p in folder.glob("histogram_*.db")}
        return len(pids - {str(process.pid)}) >= 2

    def healthz(text: str) -> float:
        return value(
            text,
            "vaporform_http_request_duration_seconds_count",
            method="GET",
            route="/healthz",
            status="200",
        )

    try:
        await wait_for_api(port)
        await wait_until(both_serving, timeout=30, what="both processes to answer requests")
        before = healthz((await get("/metrics", **BEARER)).text)
        for _ in range(20):
            assert (await get("/healthz")).status_code == 200
        for _ in range(4):  # any process answers the same sum
            assert healthz((await get("/metrics", **BEARER)).text) - before == 20
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


def test_settings_come_from_the_environment(tmp_path: Path) -> None:
    base = {"VAPORFORM_DATA_DIR": str(tmp_path), "VAPORFORM_JWT_SECRET": "s" * 40}
    default = load_config(base).telemetry
    assert default == TelemetrySettings()
    assert default.metrics_token is None  # not served unless a deployment says so
    found = load_config(
        {
            **base,
            "VAPORFORM_METRICS_TOKEN": TOKEN,
            "VAPORFORM_WORKER_METRICS_PORT": "0",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
        }
    ).telemetry
    assert found.metrics_token == TOKEN
    assert found.worker_metrics_port == 0
    assert found.otlp_traces_endpoint == "http://collector:4318/v1/traces"
    explicit = {**base, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/traces"}
    assert load_config(explicit).telemetry.otlp_traces_endpoint == "http://c:4318/traces"
    with pytest.raises(ConfigError, match="VAPORFORM_METRICS_TOKEN"):
        load_config({**base, "VAPORFORM_METRICS_TOKEN": "short"})


def test_a_tally_reaches_its_counter_when_flushed() -> None:
    """The hot path counts in a tally; a scrape (or the sampler each second) adds it up."""
    series = metrics.COLLAB_SENT.labels("pong")
    tally = metrics.tally(series)
    assert metrics.tally(series) is tally

    def sent() -> float:
        labels = {"kind": "pong"}
        return REGISTRY.get_sample_value("vaporform_collab_messages_sent_total", labels) or 0.0

    metrics.flush_tallies()
    before = sent()
    for _ in range(5):
        tally.inc()
    tally.inc(3)
    assert sent() == before
    metrics.flush_tallies()
    assert sent() == before + 8


def test_observations_reach_their_histogram_when_flushed() -> None:
    """Tallied observations land in the same buckets, count and sum as Histogram.observe
    puts them (bucket bounds included: a value on a bound is in that bucket)."""
    direct = Histogram(
        "vf_test_direct_seconds", "direct", buckets=(0.001, 0.01, 0.1), registry=None
    )
    tallied = Histogram(
        "vf_test_tallied_seconds", "tallied", buckets=(0.001, 0.01, 0.1), registry=None
    )
    found = metrics.observations(tallied)
    assert metrics.observations(tallied) is found
    values = [0.0, 0.0005, 0.001, 0.002, 0.01, 0.05, 0.1, 0.3, 7.0]

    def samples(histogram: Histogram) -> dict[tuple[str, str], float]:
        return {
            (s.name.rpartition("_seconds")[2], s.labels.get("le", "")): s.value
            for metric in histogram.collect()
            for s in metric.samples
            if not s.name.endswith("_created")
        }

    for value in values:
        direct.observe(value)
        found.observe(value)
    assert samples(tallied)[("_count", "")] == 0
    metrics.flush_tallies()
    assert samples(tallied) == samples(direct)
    assert samples(tallied)[("_bucket", "0.001")] == 3
    assert samples(tallied)[("_count", "")] == len(values)
    metrics.flush_tallies()  # nothing new: nothing added twice
    assert samples(tallied) == samples(direct)
