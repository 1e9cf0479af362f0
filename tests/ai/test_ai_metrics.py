"""AI metrics by model and kind: steps by outcome, billed calls, tokens and cost, after real
jobs through Temporal and the SDK against the fake Anthropic API (the worker runs in this
process, so its metrics are this process's)."""

from __future__ import annotations

import httpx
from prometheus_client import REGISTRY

from tests.ai.conftest import MODEL
from tests.ai.fake_anthropic import FakeAnthropic
from tests.ai.helpers import finished, start_job
from tests.ai.test_review import project_with_source, review_reply
from tests.support import register


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_billed_review_then_a_cached_one_are_counted(
    ai_http: httpx.AsyncClient, fake_reset: FakeAnthropic
) -> None:
    labels = {"model": MODEL, "kind": "review"}
    before = {
        "answered": sample("vaporform_ai_steps_total", **labels, outcome="answered"),
        "cached": sample("vaporform_ai_steps_total", **labels, outcome="cached"),
        "calls": sample("vaporform_ai_calls_total", **labels),
        "input": sample("vaporform_ai_tokens_total", **labels, type="input"),
        "output": sample("vaporform_ai_tokens_total", **labels, type="output"),
        "cost": sample("vaporform_ai_cost_usd_total", **labels),
        "timed": sample("vaporform_ai_step_duration_seconds_count", **labels),
    }
    owner = await register(ai_http, "owner")
    pid = await project_with_source(ai_http, owner)
    fake_reset.push(review_reply())
    job = await finished(
        ai_http, owner, pid, await start_job(ai_http, owner, pid, "reviews", {"paths": ["app.py"]})
    )
    assert job["status"] == "succeeded", job
    usage = job["usage"]
    assert (
        sample("vaporform_ai_steps_total", **labels, outcome="answered") == before["answered"] + 1
    )
    assert sample("vaporform_ai_calls_total", **labels) == before["calls"] + usage["calls"]
    input_tokens = sample("vaporform_ai_tokens_total", **labels, type="input")
    assert input_tokens == before["input"] + usage["input_tokens"]
    output_tokens = sample("vaporform_ai_tokens_total", **labels, type="output")
    assert output_tokens == before["output"] + usage["output_tokens"]
    assert sample("vaporform_ai_cost_usd_total", **labels) > before["cost"]
    assert sample("vaporform_ai_step_duration_seconds_count", **labels) == before["timed"] + 1

    # The same review again: from the cache, no model call.
    again = await finished(
        ai_http, owner, pid, await start_job(ai_http, owner, pid, "reviews", {"paths": ["app.py"]})
    )
    assert again["status"] == "succeeded", again
    assert sample("vaporform_ai_steps_total", **labels, outcome="cached") == before["cached"] + 1
    assert sample("vaporform_ai_calls_total", **labels) == before["calls"] + usage["calls"]
