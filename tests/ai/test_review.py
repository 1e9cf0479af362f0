"""Code review end to end: REST -> Temporal -> ruff + the real SDK -> the fake Anthropic API.

How long a review takes (with a model call, and from the cache) is measured by
bench/ai_bench.py, not asserted here."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import asyncpg
import httpx

from collab.broker import RedisBroker
from collab.channels import ai_jobs_channel
from tests.ai.fake_anthropic import FakeAnthropic, Reply
from tests.ai.helpers import answer, finished, put_file, start_job
from tests.conftest import REDIS_URL, Server, serving
from tests.support import Account, assert_error, create_project, register, wait_until
from vaporform.config import Config

SOURCE = """import os
import sys


def main(argv):
    return undefined_name + len(argv)
"""


def review_reply(path: str = "app.py") -> Reply:
    return Reply(
        text=answer(
            {
                "findings": [
                    {
                        "path": path,
                        "line_start": 6,
                        "line_end": 6,
                        "severity": "error",
                        "category": "bug",
                        "message": "undefined_name is never defined",
                        "suggestion": "define it or pass it in",
                    },
                    {
                        "path": path,
                        "line_start": 40,
                        "line_end": 42,
                        "severity": "warning",
                        "category": "style",
                        "message": "an invented line",
                    },
                ]
            }
        )
    )


async def project_with_source(http: httpx.AsyncClient, who: Account) -> str:
    pid: str = (await create_project(http, who))["id"]
    # A unique comment keeps this content out of other tests' cache entries.
    await put_file(http, who, pid, "app.py", SOURCE + f"# {uuid.uuid4().hex}\n")
    return pid


async def test_review_persists_checked_findings(
    ai_http: httpx.AsyncClient, fake_reset: FakeAnthropic, ai_config: Config
) -> None:
    owner = await register(ai_http, "owner")
    pid = await project_with_source(ai_http, owner)
    events: list[dict[str, object]] = []
    broker = RedisBroker(REDIS_URL, prefix=ai_config.redis_prefix)
    try:
        await broker.subscribe(ai_jobs_channel(pid), lambda raw: events.append(json.loads(raw)))
        await _review_and_check(ai_http, fake_reset, ai_config, owner, pid, events)
    finally:
        await broker.close()


async def _review_and_check(
    ai_http: httpx.AsyncClient,
    fake_reset: FakeAnthropic,
    ai_config: Config,
    owner: Account,
    pid: str,
    events: list[dict[str, object]],
) -> None:
    fake_reset.push(review_reply())

    job_id = await start_job(ai_http, owner, pid, "reviews", {"paths": ["app.py"]})
    job = await finished(ai_http, owner, pid, job_id)
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert [(f["line_start"], f["category"]) for f in result["findings"]] == [(6, "bug")]
    assert result["dropped"][0]["finding"]["line_start"] == 40
    assert "do not exist" in result["dropped"][0]["reason"]
    assert result["ruff_findings"] >= 3  # F401 twice, F821
    assert job["usage"]["calls"] == 1
    assert job["usage"]["input_tokens"] == 1000

    # What the SDK sent: the model, the system prompt, the cached context block, ruff's findings.
    assert len(fake_reset.log) == 1
    sent = fake_reset.log[0]
    assert sent.body["model"] == "claude-sonnet-4-6"
    credentials = sent.headers.get("x-api-key") or sent.headers.get("authorization", "")
    assert "test-key" in credentials
    system = sent.body["system"]
    assert system[1]["cache_control"] == {"type": "ephemeral"}
    assert "6|     return undefined_name + len(argv)" in system[1]["text"]
    assert "F821" in sent.body["messages"][0]["content"]
    assert "stream" not in sent.body  # a short answer is not streamed

    conn = await asyncpg.connect(ai_config.database_url)
    try:
        rows = await conn.fetch(
            "SELECT path, line_start, line_end, severity FROM ai_findings WHERE job_id = $1",
            uuid.UUID(job_id),
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [("app.py", 6, 6, "error")]

    await wait_until(lambda: _has(events, "succeeded"), what="the job events")
    assert [e["status"] for e in events] == ["running", "succeeded"]
    assert events[0] == {"type": "job", "job_id": job_id, "kind": "review", "status": "running"}

    usage = await ai_http.get(f"/api/v1/projects/{pid}/ai/usage", headers=owner.headers)
    assert usage.status_code == 200
    assert usage.json()["calls"] == 1
    assert usage.json()["output_tokens"] == 200
    assert usage.json()["cost_usd"] > 0


async def _has(events: list[dict[str, object]], status: str) -> bool:
    return any(e["status"] == status for e in events)


async def test_identical_review_is_served_from_the_cache(
    ai_http: httpx.AsyncClient, fake_reset: FakeAnthropic
) -> None:
    owner = await register(ai_http, "owner")
    pid = await project_with_source(ai_http, owner)
    fake_reset.push(review_reply())
    first = await finished(
        ai_http, owner, pid, await start_job(ai_http, owner, pid, "reviews", {"paths": ["app.py"]})
    )
    assert first["status"] == "succeeded"
    calls = len(fake_reset.log)

    job_id = await start_job(ai_http, owner, pid, "reviews", {"paths": ["app.py"]})
    second = await finished(ai_http, owner, pid, job_id)
    assert second["status"] == "succeeded"
    assert len(fake_reset.log) == calls  # no API call
    assert second["result"]["cached"] is True
    assert second["result"]["findings"] == first["result"]["findings"]
    assert second["usage"]["calls"] == 0
    assert second["usage"]["cached_calls"] == 1


async def test_overloaded_then_ok_succeeds_through_temporal_retries(
    ai_http: httpx.AsyncClient, fake_reset: FakeAnthropic
) -> None:
    owner = await register(ai_http, "owner")
    pid = await project_with_source(ai_http, owner)
    fake_reset.push(
        Reply(status=529, error_type="overloaded_error", headers={"retry-after": "0"}),
        review_reply(),
    )
    job = await finished(
        ai_http, owner, pid, await start_job(ai_http, owner, pid, "reviews", {"paths": ["app.py"]})
    )
    assert job["status"] == "succeeded", job
    assert len(fake_reset.log) == 2
    assert job["usage"]["calls"] == 1  # the refused call cost nothing


async def test_bad_request_fails_the_job_without_retrying(
    ai_http: httpx.AsyncClient, fake_reset: FakeAnthropic
) -> None:
    owner = await register(ai_http, "owner")
    pid = await project_with_source(ai_http, owner)
    fake_reset.push(
        Reply(status=400, error_type="invalid_request_error", error_message="prompt is too long")
    )
    job = await finished(
        ai_http, owner, pid, await start_job(ai_http, owner, pid, "reviews", {"paths": ["app.py"]})
    )
    assert job["status"] == "failed"
    assert job["error"]["code"] == "ai_provider_rejected"
    assert "(400)" in job["error"]["message"]
    assert "prompt is too long" in job["error"]["message"]
    assert len(fake_reset.log) == 1


async def test_invalid_json_is_repaired_once(
    ai_http: httpx.AsyncClient, fake_reset: FakeAnthropic
) -> None:
    owner = await register(ai_http, "owner")
    pid = await project_with_source(ai_http, owner)
    fake_reset.push(Reply(text="Here you go: {findings: oops"), review_reply())
    job = await finished(
        ai_http, owner, pid, await start_job(ai_http, owner, pid, "reviews", {"paths": ["app.py"]})
    )
    assert job["status"] == "succeeded", job
    assert len(fake_reset.log) == 2
    repair = fake_reset.log[1].body["messages"]
    assert repair[1]["role"] == "assistant"
    assert "not valid" in repair[2]["content"]
    assert job["usage"]["calls"] == 2


async def test_twice_invalid_json_fails_clearly(
    ai_http: httpx.AsyncClient, fake_reset: FakeAnthropic
) -> None:
    owner = await register(ai_http, "owner")
    pid = await project_with_source(ai_http, owner)
    fake_reset.push(Reply(text="no"), Reply(text='{"findings": [{"path": 3}]}'))
    job = await finished(
        ai_http, owner, pid, await start_job(ai_http, owner, pid, "reviews", {"paths": ["app.py"]})
    )
    assert job["status"] == "failed"
    assert job["error"]["code"] == "ai_invalid_answer"
    assert len(fake_reset.log) == 2


async def test_roles_and_budgets(
    ai_http: httpx.AsyncClient, ai_server: Server, ai_config: Config, fake_reset: FakeAnthropic
) -> None:
    owner = await register(ai_http, "owner")
    viewer = await register(ai_http, "viewer")
    stranger = await register(ai_http, "stranger")
    pid = await project_with_source(ai_http, owner)
    added = await ai_http.post(
        f"/api/v1/projects/{pid}/members",
        json={"email": viewer.email, "role": "viewer"},
        headers=owner.headers,
    )
    assert added.status_code == 201
    fake_reset.push(review_reply())
    job_id = await start_job(ai_http, owner, pid, "reviews", {})
    await finished(ai_http, owner, pid, job_id)

    base = f"/api/v1/projects/{pid}/ai"
    assert (await ai_http.get(f"{base}/jobs/{job_id}", headers=viewer.headers)).status_code == 200
    assert_error(await ai_http.post(f"{base}/reviews", json={}, headers=viewer.headers), 403)
    assert_error(await ai_http.get(f"{base}/jobs/{job_id}", headers=stranger.headers), 404)
    assert_error(await ai_http.post(f"{base}/reviews", json={}, headers=stranger.headers), 404)
    assert_error(await ai_http.get(f"{base}/usage", headers=stranger.headers), 404)
    assert_error(await ai_http.get(f"{base}/jobs/{uuid.uuid4()}", headers=owner.headers), 404)
    assert_error(
        await ai_http.post(f"{base}/reviews", json={"paths": ["../x"]}, headers=owner.headers),
        400,
        "invalid_path",
    )
    assert_error(await ai_http.post(f"{base}/debug", json={}, headers=owner.headers), 400)
    assert_error(
        await ai_http.post(f"{base}/jobs/{job_id}/apply", headers=owner.headers),
        409,
        "nothing_to_apply",
    )

    broke = replace(ai_config, ai=replace(ai_config.ai, budget_project_usd=0.0))
    async with serving(broke) as server, httpx.AsyncClient(base_url=server.base_url) as client:
        refused = await client.post(f"{base}/reviews", json={}, headers=owner.headers)
    error = assert_error(refused, 402, "budget_exceeded")
    assert error["details"]["scope"] == "project"
    assert error["details"]["budget_usd"] == 0.0
