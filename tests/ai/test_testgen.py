"""Test generation: generated tests run in the project's container and are filtered; and the
offline provider (ruff, Hypothesis' ghostwriter) without a key."""

from __future__ import annotations

import time
import uuid

import httpx

from tests.ai.fake_anthropic import FakeAnthropic, Reply
from tests.ai.helpers import answer, finished, put_file, start_job
from tests.support import create_project, register

CALC = """def add(a, b):
    return a + b


def classify(n):
    if n < 0:
        return "negative"
    if n == 0:
        return "zero"
    return "positive"
"""

CANDIDATES = """import calc

_calls = [0]


def test_add():
    assert calc.add(2, 3) == 5


def test_wrong():
    assert calc.classify(-1) == "positive"


def test_flaky():
    _calls[0] += 1
    assert calc.classify(0) == "zero"
    assert _calls[0] % 2 == 1
"""


async def test_only_reliably_passing_tests_that_add_coverage_are_kept(
    ai_http: httpx.AsyncClient, fake_reset: FakeAnthropic
) -> None:
    owner = await register(ai_http, "owner")
    pid = (await create_project(ai_http, owner))["id"]
    await put_file(ai_http, owner, pid, "calc.py", CALC + f"# {uuid.uuid4().hex}\n")
    fake_reset.push(
        Reply(text=answer({"code": CANDIDATES})),
        # The feedback round: the failing test comes back still wrong.
        Reply(
            text=answer(
                {"code": "import calc\n\n\ndef test_wrong():\n    assert calc.add(1, 1) == 3\n"}
            )
        ),
    )
    started = time.perf_counter()
    job_id = await start_job(ai_http, owner, pid, "tests", {"path": "calc.py"})
    job = await finished(ai_http, owner, pid, job_id, timeout=120)
    print(f"test generation job: {time.perf_counter() - started:.1f} s")
    assert job["status"] == "succeeded", job
    result = job["result"]
    verdicts = {t["name"]: t["verdict"] for t in result["tests"]}
    assert verdicts == {"test_add": "kept", "test_wrong": "failed", "test_flaky": "flaky"}
    assert (result["generated"], result["built"], result["passed"], result["kept"]) == (3, 3, 1, 1)
    assert result["coverage_before"] == 0.0
    assert 0 < result["coverage_after"] < 100
    assert result["final_run_ok"] is True
    assert len(fake_reset.log) == 2
    feedback = fake_reset.log[1].body["messages"][0]["content"]
    assert "test_wrong" in feedback
    assert "test_flaky" in feedback

    [change] = result["changes"]
    assert change["path"] == "tests/test_calc_ai.py"
    assert "def test_add" in change["content"]
    assert "def test_wrong" not in change["content"]
    assert "def test_flaky" not in change["content"]
    applied = await ai_http.post(
        f"/api/v1/projects/{pid}/ai/jobs/{job_id}/apply", headers=owner.headers
    )
    assert applied.status_code == 200, applied.text
    assert applied.json()["files"] == [{"path": "tests/test_calc_ai.py", "version": 1}]

    # With that test in the project, coverage before a second job starts where this one ended.
    fake_reset.push(Reply(text=answer({"code": CANDIDATES})), Reply(text=answer({"code": "\n"})))
    again = await finished(
        ai_http,
        owner,
        pid,
        await start_job(ai_http, owner, pid, "tests", {"path": "calc.py"}),
        timeout=120,
    )
    assert again["status"] == "succeeded", again
    assert again["result"]["coverage_before"] == result["coverage_after"]
    assert again["result"]["kept"] == 0  # test_add adds nothing new now


async def test_offline_review_is_ruff_and_generate_is_not_configured(
    offline_http: httpx.AsyncClient,
) -> None:
    owner = await register(offline_http, "owner")
    pid = (await create_project(offline_http, owner))["id"]
    await put_file(
        offline_http, owner, pid, "bad.py", "import json\n\n\ndef f():\n    return missing\n"
    )
    review = await finished(
        offline_http, owner, pid, await start_job(offline_http, owner, pid, "reviews", {})
    )
    assert review["status"] == "succeeded", review
    found = {(f["category"], f["line_start"], f["source"]) for f in review["result"]["findings"]}
    assert found == {("ruff F401", 1, "ruff"), ("ruff F821", 5, "ruff")}
    assert review["usage"]["calls"] == 0

    generate = await finished(
        offline_http,
        owner,
        pid,
        await start_job(offline_http, owner, pid, "generate", {"prompt": "anything"}),
    )
    assert generate["status"] == "failed"
    assert generate["error"]["code"] == "ai_provider_not_configured"
    assert "ANTHROPIC_API_KEY" in generate["error"]["message"]


async def test_offline_ghostwriter_tests_are_produced_and_run(
    offline_http: httpx.AsyncClient,
) -> None:
    owner = await register(offline_http, "owner")
    pid = (await create_project(offline_http, owner))["id"]
    await put_file(
        offline_http, owner, pid, "mathx.py", "def add(a: int, b: int) -> int:\n    return a + b\n"
    )
    job = await finished(
        offline_http,
        owner,
        pid,
        await start_job(offline_http, owner, pid, "tests", {"path": "mathx.py"}),
        timeout=120,
    )
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["generated"] >= 1
    assert result["kept"] >= 1, result
    assert result["coverage_after"] == 100.0
    assert "from hypothesis import" in result["changes"][0]["content"]
