"""Code generation and debugging end to end, and `apply` turning proposals into versions."""

from __future__ import annotations

import uuid

import asyncpg
import httpx

from tests.ai.fake_anthropic import FakeAnthropic, Reply
from tests.ai.helpers import answer, finished, put_file, start_job
from tests.support import assert_error, create_project, register
from vaporform.config import Config


async def test_generate_then_apply_writes_versions_by_ai(
    ai_http: httpx.AsyncClient, fake_reset: FakeAnthropic, ai_config: Config
) -> None:
    owner = await register(ai_http, "owner")
    pid = (await create_project(ai_http, owner))["id"]
    tag = uuid.uuid4().hex
    await put_file(ai_http, owner, pid, "greet.py", f"def hello():\n    return 'hi'  # {tag}\n")
    fake_reset.push(
        Reply(
            text=answer(
                {
                    "explanation": "added a name parameter and a new module",
                    "changes": [
                        {"path": "greet.py", "content": "def hello(name):\n    return name\n"},
                        {
                            "path": "util/shout.py",
                            "content": "def shout(s):\n    return s.upper()\n",
                        },
                    ],
                }
            )
        )
    )
    job_id = await start_job(
        ai_http, owner, pid, "generate", {"prompt": "greet by name", "paths": ["greet.py"]}
    )
    job = await finished(ai_http, owner, pid, job_id)
    assert job["status"] == "succeeded", job
    changes = {c["path"]: c for c in job["result"]["changes"]}
    assert changes["greet.py"]["base_version"] == 1
    assert changes["util/shout.py"]["base_version"] == 0
    assert "+def hello(name):" in changes["greet.py"]["diff"]
    assert fake_reset.log[0].body["stream"] is True  # long answers stream (SSE)
    assert "greet by name" in fake_reset.log[0].body["messages"][0]["content"]

    applied = await ai_http.post(
        f"/api/v1/projects/{pid}/ai/jobs/{job_id}/apply", headers=owner.headers
    )
    assert applied.status_code == 200, applied.text
    assert sorted((f["path"], f["version"]) for f in applied.json()["files"]) == [
        ("greet.py", 2),
        ("util/shout.py", 1),
    ]
    read = await ai_http.get(f"/api/v1/projects/{pid}/files/greet.py", headers=owner.headers)
    assert read.json()["content"] == "def hello(name):\n    return name\n"
    conn = await asyncpg.connect(ai_config.database_url)
    try:
        kinds = await conn.fetch(
            """
            SELECT v.author_kind, v.author_id FROM file_versions v JOIN files f ON f.id = v.file_id
            WHERE f.project_id = $1 AND v.version = 2 AND f.path = 'greet.py'
            """,
            uuid.UUID(pid),
        )
    finally:
        await conn.close()
    assert [(k["author_kind"], str(k["author_id"])) for k in kinds] == [("ai", owner.id)]
    assert_error(
        await ai_http.post(f"/api/v1/projects/{pid}/ai/jobs/{job_id}/apply", headers=owner.headers),
        409,
        "already_applied",
    )


async def test_apply_after_a_concurrent_edit_conflicts(
    ai_http: httpx.AsyncClient, fake_reset: FakeAnthropic
) -> None:
    owner = await register(ai_http, "owner")
    pid = (await create_project(ai_http, owner))["id"]
    await put_file(ai_http, owner, pid, "a.py", f"x = 1  # {uuid.uuid4().hex}\n")
    fake_reset.push(Reply(text=answer({"changes": [{"path": "a.py", "content": "x = 2\n"}]})))
    job_id = await start_job(ai_http, owner, pid, "generate", {"prompt": "two", "paths": ["a.py"]})
    assert (await finished(ai_http, owner, pid, job_id))["status"] == "succeeded"
    await put_file(ai_http, owner, pid, "a.py", "x = 3\n")  # someone edits meanwhile
    error = assert_error(
        await ai_http.post(f"/api/v1/projects/{pid}/ai/jobs/{job_id}/apply", headers=owner.headers),
        409,
        "version_conflict",
    )
    assert error["details"]["current_version"] == 2
    read = await ai_http.get(f"/api/v1/projects/{pid}/files/a.py", headers=owner.headers)
    assert read.json()["content"] == "x = 3\n"


async def test_debug_runs_the_command_in_the_container(
    ai_http: httpx.AsyncClient, fake_reset: FakeAnthropic
) -> None:
    owner = await register(ai_http, "owner")
    pid = (await create_project(ai_http, owner))["id"]
    tag = uuid.uuid4().hex
    await put_file(
        ai_http, owner, pid, "main.py", f"from helper import ratio\n\nprint(ratio(1, 0))  # {tag}\n"
    )
    await put_file(ai_http, owner, pid, "helper.py", "def ratio(a, b):\n    return a / b\n")
    fixed = "def ratio(a, b):\n    return a / b if b else 0.0\n"
    fake_reset.push(
        Reply(
            text=answer(
                {
                    "explanation": "ratio divides by zero when b is 0",
                    "changes": [{"path": "helper.py", "content": fixed}],
                }
            )
        )
    )
    job_id = await start_job(
        ai_http, owner, pid, "debug", {"command": ["python3", "-B", "main.py"]}
    )
    job = await finished(ai_http, owner, pid, job_id, timeout=90)
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["command"]["exit_code"] == 1
    assert {f["path"] for f in result["files"]} == {"main.py", "helper.py"}  # from the traceback
    assert [c["path"] for c in result["changes"]] == ["helper.py"]
    prompt = fake_reset.log[0].body["messages"][0]["content"]
    assert "ZeroDivisionError" in prompt
    applied = await ai_http.post(
        f"/api/v1/projects/{pid}/ai/jobs/{job_id}/apply", headers=owner.headers
    )
    assert applied.status_code == 200, applied.text
    assert applied.json()["files"] == [{"path": "helper.py", "version": 2}]


async def test_debug_with_an_error_needs_no_container(
    ai_http: httpx.AsyncClient, fake_reset: FakeAnthropic
) -> None:
    owner = await register(ai_http, "owner")
    pid = (await create_project(ai_http, owner))["id"]
    await put_file(ai_http, owner, pid, "m.py", f"def f():\n    return g()  # {uuid.uuid4().hex}\n")
    fake_reset.push(Reply(text=answer({"explanation": "g is not defined", "changes": []})))
    error = 'Traceback (most recent call last):\n  File "/workspace/m.py", line 2, in f\nNameError'
    job_id = await start_job(ai_http, owner, pid, "debug", {"error": error})
    job = await finished(ai_http, owner, pid, job_id)
    assert job["status"] == "succeeded", job
    assert job["result"]["explanation"] == "g is not defined"
    assert [f["path"] for f in job["result"]["files"]] == ["m.py"]
