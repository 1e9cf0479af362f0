"""The serving processes' garbage collector (web/gc_pauses.py): what start-up built is set
aside, young collections are rare, and every pause is reported."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx

from tests.conftest import free_port
from tests.support import api_process_env, spawn_api, wait_for_api
from tests.web.test_metrics import BEARER, TOKEN, value
from vaporform.config import Config

# Run in a process of its own: tuning the test run's own collector would freeze its objects.
PROBE = """
import gc, json
from prometheus_client import REGISTRY
from web import gc_pauses

gc_pauses.tune()
frozen = gc.get_freeze_count()
young_before = gc.get_stats()[0]["collections"]
# 5,000 containers that live on: the defaults would collect the young generation 7 times.
kept = [[index] for index in range(5_000)]
young_after = gc.get_stats()[0]["collections"]
cycle = []
cycle.append(cycle)
del cycle
gc.collect()  # a full collection, as the thresholds would run one in time
gc_pauses.report()
print(json.dumps({
    "threshold": gc.get_threshold(),
    "frozen": frozen,
    "frozen_gauge": REGISTRY.get_sample_value("vaporform_gc_frozen_objects"),
    "young": young_after - young_before,
    "full_pauses": REGISTRY.get_sample_value(
        "vaporform_gc_pause_seconds_count", {"generation": "2"}
    ),
}))
"""


def test_tuning_freezes_start_up_raises_the_young_threshold_and_reports_pauses() -> None:
    found = json.loads(
        subprocess.run(
            [sys.executable, "-c", PROBE], check=True, capture_output=True, text=True, timeout=60
        ).stdout
    )
    assert found["threshold"] == [10_000, 10, 100]
    # The modules imported by then: tens of thousands of objects no collection walks again.
    assert found["frozen"] > 10_000
    assert found["frozen_gauge"] == found["frozen"]
    assert found["young"] == 0
    assert found["full_pauses"] == 1


async def test_the_api_process_serves_with_its_collector_tuned(config: Config) -> None:
    """`vaporform api` (its server builds the app with web.serving.create)."""
    port = free_port()
    process = await spawn_api({**api_process_env(config, port), "VAPORFORM_METRICS_TOKEN": TOKEN})
    try:
        await wait_for_api(port)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            scraped = await http.get("/metrics", headers=BEARER)
        assert scraped.status_code == 200, scraped.text
        assert value(scraped.text, "vaporform_gc_frozen_objects") > 10_000
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()
