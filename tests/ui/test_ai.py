"""The AI panel: a review's findings become diagnostics on their lines, and a generated change
is applied as a new version."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, expect
from temporalio.client import Client

import worker as worker_module
from activities.ai.anthropic_provider import AnthropicProvider
from collab.broker import RedisBroker
from files.factory import build_filesystem
from store import db
from tests.ai.fake_anthropic import FakeAnthropic, Reply
from tests.ai.helpers import answer
from tests.conftest import REDIS_URL, Server, api_client, serving
from tests.support import Account, create_project, register
from tests.ui.conftest import Browsers
from tests.ui.helpers import add_member, editor, open_ready, put_file, wait_text
from vaporform.config import Config
from vaporform.settings.ai import AISettings

SOURCE = "import os\n\n\ndef main(argv):\n    return undefined_name + len(argv)\n"


async def finished(api: httpx.AsyncClient, who: Account, pid: str, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        job: dict[str, Any] = (
            await api.get(f"/api/v1/projects/{pid}/ai/jobs/{job_id}", headers=who.headers)
        ).json()
        if job["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            return job
        await asyncio.sleep(0.2)


async def test_review_findings_show_as_diagnostics_on_their_lines(
    api: httpx.AsyncClient, people: Browsers, owner: Account
) -> None:
    pid = (await create_project(api, owner, name="review"))["id"]
    await put_file(api, owner, pid, "app.py", SOURCE)
    colleague = await register(api, "colleague")
    await add_member(api, owner, pid, colleague, "viewer")
    # Someone else has the file open: the findings reach them too (job events).
    other = await people.signed_in(colleague, f"/projects/{pid}/files/app.py")
    await open_ready(other)
    page = await people.signed_in(owner, f"/projects/{pid}/files/app.py")
    found = await open_ready(page)
    await page.get_by_role("tab", name="AI", exact=True).click()
    panel = page.get_by_test_id("ai-panel")
    await panel.get_by_role("button", name="Review file").click()
    job = panel.locator(".job").first
    await expect(job).to_have_attribute("data-status", "succeeded", timeout=60_000)

    result = await finished(api, owner, pid, str(await job.get_attribute("data-job-id")))
    findings = [f for f in result["result"]["findings"] if f["path"] == "app.py"]
    lines = {f["line_start"] for f in findings}
    # ruff finds the unused import (line 1) and the undefined name (line 5).
    assert {1, 5} <= lines, findings
    rows = found.locator(".cm-line")
    for line in lines:
        await expect(rows.nth(line - 1).locator("[class*=cm-lintRange]")).not_to_have_count(0)
    await expect(rows.nth(1).locator("[class*=cm-lintRange]")).to_have_count(0)
    await expect(found.locator(".cm-lint-marker")).to_have_count(len(lines))
    await expect(panel.locator(".findings li")).to_have_count(len(findings))
    others = editor(other).locator(".cm-line")
    for line in lines:
        await expect(others.nth(line - 1).locator("[class*=cm-lintRange]")).not_to_have_count(0)


# -- generate + apply: a worker whose provider talks to a fake Anthropic API ------------------


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeAnthropic]:
    server = FakeAnthropic()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
async def generating_server(
    ui_config: Config, fake: FakeAnthropic, temporal_client: Client, bundle: Path
) -> AsyncIterator[Server]:
    config = replace(
        ui_config,
        task_queue=f"{ui_config.task_queue}-ui-gen",
        ai=AISettings(
            api_key="test-key",
            base_url=fake.base_url,
            model="claude-sonnet-4-6",
            request_timeout_s=20,
        ),
    )
    pool = await db.create_pool(config.database_url, min_size=1, max_size=5)
    broker = RedisBroker(REDIS_URL, prefix=config.redis_prefix)
    provider = AnthropicProvider(
        "test-key", "claude-sonnet-4-6", base_url=fake.base_url, timeout_s=20
    )
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="ui-ai") as executor:
        async with (
            worker_module.build_worker(
                temporal_client,
                pool,
                config.task_queue,
                executor,
                files=build_filesystem(config, pool),
                broker=broker,
                ai_provider=provider,
                ai_budgets=worker_module.budgets_of(config.ai),
            ),
            serving(config) as found,
        ):
            yield found
    await provider.close()
    await broker.close()
    await pool.close()


async def test_a_generated_change_is_shown_as_a_diff_and_applied_as_a_version(
    browser: Browser, generating_server: Server, fake: FakeAnthropic
) -> None:
    people = Browsers(browser, generating_server.base_url)
    async with api_client(generating_server) as api:
        owner = await register(api, "gen")
        pid = (await create_project(api, owner, name="generate"))["id"]
        await put_file(api, owner, pid, "greet.py", "def hello():\n    return 'hi'\n")
        new = "def hello(name):\n    return f'hi {name}'\n"
        fake.reset()
        fake.push(
            Reply(
                text=answer(
                    {
                        "explanation": "greets by name",
                        "changes": [{"path": "greet.py", "content": new}],
                    }
                )
            )
        )
        try:
            page = await people.signed_in(owner, f"/projects/{pid}/files/greet.py")
            await open_ready(page)
            await page.get_by_role("tab", name="AI", exact=True).click()
            panel = page.get_by_test_id("ai-panel")
            await panel.get_by_role("button", name="Generate…").click()
            await page.get_by_label("What should change?").fill("greet by name")
            await page.get_by_role("button", name="Generate", exact=True).click()
            job = panel.locator(".job").first
            await expect(job).to_have_attribute("data-status", "succeeded", timeout=60_000)
            await expect(job.locator(".diff")).to_contain_text("+def hello(name):")
            await expect(job).to_contain_text("greets by name")
            await job.get_by_test_id("ai-apply").click()
            await expect(job.locator(".apply-status")).to_have_text("Applied: greet.py v2")
            # The open editor receives the change, and it is a version by the author "ai".
            await wait_text(page, lambda text: text == new)
            history = await api.get(
                f"/api/v1/projects/{pid}/history?path=greet.py", headers=owner.headers
            )
            latest = history.json()["items"][0]
            assert latest["version"] == 2, latest
            assert latest.get("author", "ai") == "ai", latest
            await expect(editor(page)).to_be_visible()
        finally:
            await people.close()
