"""Exact budgets end to end: REST -> Temporal -> the real SDK -> the fake Anthropic API.

Each model call reserves its worst-case cost before it is made; a call held open in the fake
server keeps its reservation, so a second job that would overshoot together with it is refused
while the first is still in flight, which is exactly when spend alone would let it through.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import replace
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.client import Client

import worker as worker_module
from activities.ai.anthropic_provider import AnthropicProvider
from files.factory import build_filesystem
from store import db
from tests.ai.fake_anthropic import FakeAnthropic, Reply
from tests.ai.helpers import answer, finished, put_file, start_job
from tests.conftest import api_client
from tests.support import Account, assert_error, create_project, register, wait_until
from vaporform.config import Config

# A review's worst case here is ~$0.07 (4096 output tokens at $15/MTok dominate): one fits,
# two do not. The test checks that premise against the reservation it sees.
BUDGET_FOR_ONE = 0.10

SOURCE = "def area(w, h):\n    return w * h\n"
FINDING = {
    "path": "app.py",
    "line_start": 2,
    "line_end": 2,
    "severity": "info",
    "category": "style",
    "message": "fine",
}


@asynccontextmanager
async def budget_stack(
    temporal_client: Client, config: Config, executor: ThreadPoolExecutor
) -> AsyncIterator[httpx.AsyncClient]:
    """A worker (on a task queue of its own) and an API server, both with `config`'s budgets."""
    settings = config.ai
    assert settings.api_key is not None
    provider = AnthropicProvider(
        settings.api_key, settings.model, base_url=settings.base_url, timeout_s=20
    )
    pool = await db.create_pool(config.database_url, min_size=1, max_size=5)
    try:
        async with (
            worker_module.build_worker(
                temporal_client,
                pool,
                config.task_queue,
                executor,
                files=build_filesystem(config, pool),
                ai_provider=provider,
                ai_budgets=worker_module.budgets_of(config.ai),
            ),
            api_client(config, timeout=60) as http,
        ):
            yield http
    finally:
        await provider.close()
        await pool.close()


async def project_with_source(http: httpx.AsyncClient, who: Account) -> str:
    pid: str = (await create_project(http, who))["id"]
    # Content of its own: no cached answer of another test can answer for the model.
    await put_file(http, who, pid, "app.py", SOURCE + f"# {uuid.uuid4().hex}\n")
    return pid


async def job_of(http: httpx.AsyncClient, who: Account, pid: str, job_id: str) -> dict[str, Any]:
    response = await http.get(f"/api/v1/projects/{pid}/ai/jobs/{job_id}", headers=who.headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def reservations(database_url: str, job_ids: list[str]) -> list[asyncpg.Record]:
    conn = await db.connect(database_url)
    try:
        return list(
            await conn.fetch(
                "SELECT job_id, amount_usd FROM ai_reservations WHERE job_id = ANY($1::uuid[])",
                job_ids,
            )
        )
    finally:
        await conn.close()


@pytest.mark.parametrize("scope", ["project", "user"])
async def test_two_parallel_jobs_against_a_budget_that_fits_one(
    scope: str,
    temporal_client: Client,
    ai_config: Config,
    executor: ThreadPoolExecutor,
    fake_reset: FakeAnthropic,
) -> None:
    limited = replace(
        ai_config,
        task_queue=f"{ai_config.task_queue}-budget-{uuid.uuid4().hex[:8]}",
        ai=replace(
            ai_config.ai,
            budget_project_usd=BUDGET_FOR_ONE if scope == "project" else 100.0,
            budget_user_usd=BUDGET_FOR_ONE if scope == "user" else 100.0,
        ),
    )
    async with budget_stack(temporal_client, limited, executor) as http:
        owner = await register(http, "owner")
        first = await project_with_source(http, owner)
        # Project budget: two jobs of one project; user budget: one job in each of two projects.
        second = first if scope == "project" else await project_with_source(http, owner)
        hold = asyncio.Event()
        fake_reset.push(Reply(text=answer({"findings": [FINDING]}), hold=hold))
        pids = [first, second]
        job_ids = list(
            await asyncio.gather(
                *(start_job(http, owner, pid, "reviews", {"paths": ["app.py"]}) for pid in pids)
            )
        )
        jobs: dict[str, dict[str, Any]] = {}
        try:

            async def one_refused() -> bool:
                for pid, job_id in zip(pids, job_ids, strict=True):
                    jobs[job_id] = await job_of(http, owner, pid, job_id)
                return len(fake_reset.log) == 1 and any(
                    j["status"] == "failed" for j in jobs.values()
                )

            await wait_until(
                one_refused, timeout=30, what="one call in flight and the other job refused"
            )
            # What stood in the refused job's way: the call in flight, holding its reservation.
            [held] = await reservations(limited.database_url, job_ids)
            assert Decimal(BUDGET_FOR_ONE) / 2 < held["amount_usd"] <= Decimal(BUDGET_FOR_ONE)
        finally:
            hold.set()
        [refused_id] = [i for i, j in jobs.items() if j["status"] == "failed"]
        [ran_id] = [i for i in job_ids if i != refused_id]
        assert str(held["job_id"]) == ran_id
        ran = await finished(http, owner, pids[job_ids.index(ran_id)], ran_id)

    assert ran["status"] == "succeeded", ran
    assert ran["usage"]["calls"] == 1
    refused = jobs[refused_id]
    assert refused["error"]["code"] == "budget_exceeded", refused
    assert refused["error"]["details"]["scope"] == scope
    assert refused["error"]["details"]["budget_usd"] == BUDGET_FOR_ONE
    assert refused["error"]["details"]["reserved_usd"] > BUDGET_FOR_ONE / 2
    assert refused["usage"]["calls"] == 0
    assert len(fake_reset.log) == 1  # exactly one job reached the model
    # The actual cost replaced the reservation.
    assert await reservations(limited.database_url, job_ids) == []
    assert 0 < ran["usage"]["cost_usd"] < BUDGET_FOR_ONE


async def test_usage_outlives_its_project(
    ai_http: httpx.AsyncClient, ai_config: Config, fake_reset: FakeAnthropic, worker: None
) -> None:
    """`worker` is the session's main worker, whose outbox relay starts the deletion."""
    owner = await register(ai_http, "owner")
    pid = await project_with_source(ai_http, owner)
    fake_reset.push(Reply(text=answer({"findings": [FINDING]})))
    job = await finished(
        ai_http, owner, pid, await start_job(ai_http, owner, pid, "reviews", {"paths": ["app.py"]})
    )
    assert job["status"] == "succeeded", job
    spent = job["usage"]["cost_usd"]
    assert spent > 0

    deleted = await ai_http.delete(f"/api/v1/projects/{pid}", headers=owner.headers)
    assert deleted.status_code == 202, deleted.text
    conn = await db.connect(ai_config.database_url)
    try:
        # The ProjectDeletion workflow removes the project's rows (its jobs with them).
        async def purged() -> bool:
            found = "SELECT count(*) = 0 FROM projects WHERE id = $1"
            return bool(await conn.fetchval(found, uuid.UUID(pid)))

        await wait_until(purged, timeout=60, what="the project's deletion")
        kept = await conn.fetch(
            "SELECT project_id, job_id, cost_usd FROM ai_usage WHERE user_id = $1",
            uuid.UUID(owner.id),
        )
    finally:
        await conn.close()
    assert [(str(r["project_id"]), r["job_id"], float(r["cost_usd"])) for r in kept] == [
        (pid, None, spent)
    ]

    # The user's budget still counts it: exactly what was spent leaves nothing for a new job.
    spent_up = replace(ai_config, ai=replace(ai_config.ai, budget_user_usd=spent))
    async with api_client(spent_up) as http:
        other = (await create_project(http, owner))["id"]
        refused = await http.post(
            f"/api/v1/projects/{other}/ai/reviews", json={}, headers=owner.headers
        )
    error = assert_error(refused, 402, "budget_exceeded")
    assert error["details"]["scope"] == "user"
    assert error["details"]["spent_usd"] == spent


@pytest.mark.parametrize(
    "replies",
    [
        pytest.param(
            [Reply(stop_reason="max_tokens", output_tokens=4096, text='{"findings": [')],
            id="cut off at max_tokens",
        ),
        pytest.param([Reply(text="no"), Reply(text='{"findings": [{"path": 3}]}')], id="invalid"),
    ],
)
async def test_failed_calls_that_were_billed_are_metered(
    replies: list[Reply], ai_http: httpx.AsyncClient, ai_config: Config, fake_reset: FakeAnthropic
) -> None:
    owner = await register(ai_http, "owner")
    pid = await project_with_source(ai_http, owner)
    fake_reset.push(*replies)
    job_id = await start_job(ai_http, owner, pid, "reviews", {"paths": ["app.py"]})
    job = await finished(ai_http, owner, pid, job_id)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "ai_invalid_answer"
    assert len(fake_reset.log) == len(replies)
    assert job["usage"]["calls"] == len(replies)
    assert job["usage"]["output_tokens"] == sum(r.output_tokens for r in replies)
    assert job["usage"]["cost_usd"] > 0
    assert await reservations(ai_config.database_url, [job_id]) == []
    usage = await ai_http.get(f"/api/v1/projects/{pid}/ai/usage", headers=owner.headers)
    assert usage.json()["cost_usd"] == job["usage"]["cost_usd"]


async def test_a_stream_broken_mid_answer_is_metered_and_retried(
    ai_http: httpx.AsyncClient, ai_config: Config, fake_reset: FakeAnthropic
) -> None:
    owner = await register(ai_http, "owner")
    pid = await project_with_source(ai_http, owner)
    changed = answer(
        {
            "explanation": "renamed",
            "changes": [{"path": "app.py", "content": "def surface(w, h):\n    return w * h\n"}],
        }
    )
    fake_reset.push(
        # Overloaded after the answer began: billed for what it had reported, then retried.
        Reply(text=changed, error_after_deltas=1, error_type="overloaded_error"),
        Reply(text=changed),
    )
    job_id = await start_job(
        ai_http, owner, pid, "generate", {"prompt": "rename area", "paths": ["app.py"]}
    )
    job = await finished(ai_http, owner, pid, job_id)
    assert job["status"] == "succeeded", job
    assert [entry.body.get("stream") for entry in fake_reset.log] == [True, True]
    assert job["usage"]["calls"] == 2
    # The broken call reported its input and one output token (message_start) before it broke.
    assert job["usage"]["input_tokens"] == 2 * 1000
    assert job["usage"]["output_tokens"] == 1 + 200
    assert await reservations(ai_config.database_url, [job_id]) == []
