"""End-to-end latency of AI review jobs, with a model call and answered from the cache.

    python bench/ai_bench.py [--jobs 20]

It starts its own stack (bench/stack.py: worker and API as processes, the Temporal dev server,
a fresh database), the worker's provider pointed at the fake Anthropic API of the tests
(tests/ai/fake_anthropic.py, served from this process, answering at once). So the figures are
Vaporform's own cost of a job: REST, the workflow and its activities, ruff, the SDK's request
and the PostgreSQL rows, without a model's thinking time.

Each sample is one job, one at a time (closed loop, one client), timed from `POST .../ai/reviews`
to the first `GET .../ai/jobs/{id}` that shows it finished (polled every 10 ms):

- model call: a review of content never reviewed before (one API call);
- cache hit: the same review again at once (no API call: the answer comes from `ai_cache`).

One untimed job first: a fresh worker's first workflow pays for imports and connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import stack
from bench.stats import percentile
from tests.ai.fake_anthropic import FakeAnthropic, Reply
from tests.ai.helpers import put_file, start_job
from tests.support import Account, create_project, register

SOURCE = "import os\nimport sys\n\n\ndef main(argv):\n    return undefined_name + len(argv)\n"
FINDING = {
    "path": "app.py",
    "line_start": 6,
    "line_end": 6,
    "severity": "error",
    "category": "bug",
    "message": "undefined_name is never defined",
}
POLL_S = 0.01


async def review(http: httpx.AsyncClient, who: Account, pid: str) -> tuple[float, dict[str, Any]]:
    """One review job of app.py: milliseconds from start to finished, and the job."""
    started = time.perf_counter()
    job_id = await start_job(http, who, pid, "reviews", {"paths": ["app.py"]})
    while True:
        response = await http.get(f"/api/v1/projects/{pid}/ai/jobs/{job_id}", headers=who.headers)
        job: dict[str, Any] = response.json()
        if job["status"] in ("succeeded", "failed"):
            elapsed = (time.perf_counter() - started) * 1000
            assert job["status"] == "succeeded", job
            return elapsed, job
        await asyncio.sleep(POLL_S)


def line(name: str, values: list[float]) -> str:
    return (
        f"{name:<12} n={len(values):>4}  p50={percentile(values, 50):8.1f} ms  "
        f"p95={percentile(values, 95):8.1f} ms  max={max(values):8.1f} ms"
    )


async def bench(url: str, fake: FakeAnthropic, jobs: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        owner = await register(http, "bench")
        pid = (await create_project(http, owner, name="ai-bench"))["id"]
        await put_file(http, owner, pid, "app.py", SOURCE + f"# {uuid.uuid4().hex}\n")
        cold, _ = await review(http, owner, pid)
        print(f"first job (fresh worker, untimed in the figures): {cold:.0f} ms", flush=True)
        called, cached = [], []
        for _ in range(jobs):
            # New content: a request the cache has never seen (the put is not timed).
            await put_file(http, owner, pid, "app.py", SOURCE + f"# {uuid.uuid4().hex}\n")
            calls = len(fake.log)
            elapsed, job = await review(http, owner, pid)
            assert job["result"]["cached"] is False, job
            assert len(fake.log) == calls + 1
            called.append(elapsed)
            elapsed, job = await review(http, owner, pid)
            assert job["result"]["cached"] is True, job
            assert len(fake.log) == calls + 1  # no API call
            cached.append(elapsed)
        print(line("model call", called))
        print(line("cache hit", cached))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20)
    args = parser.parse_args()
    fake = FakeAnthropic()
    fake.default = Reply(text=json.dumps({"findings": [FINDING]}))
    await fake.start()
    try:
        env = {
            "ANTHROPIC_API_KEY": "bench-key",
            "ANTHROPIC_BASE_URL": fake.base_url,
            "VAPORFORM_AI_MODEL": "claude-sonnet-4-6",
        }
        async with stack(env) as url:
            await bench(url, fake, args.jobs)
    finally:
        await fake.stop()


if __name__ == "__main__":
    asyncio.run(main())
