"""Small steps the AI tests share: files, jobs, waiting for a job to finish."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.support import Account, wait_until


async def put_file(http: httpx.AsyncClient, who: Account, pid: str, path: str, content: str) -> int:
    response = await http.put(
        f"/api/v1/projects/{pid}/files/{path}", json={"content": content}, headers=who.headers
    )
    assert response.status_code in (200, 201), response.text
    version: int = response.json()["version"]
    return version


async def start_job(
    http: httpx.AsyncClient, who: Account, pid: str, kind: str, body: dict[str, Any]
) -> str:
    response = await http.post(f"/api/v1/projects/{pid}/ai/{kind}", json=body, headers=who.headers)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


async def finished(
    http: httpx.AsyncClient, who: Account, pid: str, job_id: str, timeout: float = 60
) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def done() -> bool:
        response = await http.get(f"/api/v1/projects/{pid}/ai/jobs/{job_id}", headers=who.headers)
        assert response.status_code == 200, response.text
        found.update(response.json())
        return found["status"] in ("succeeded", "failed")

    await wait_until(done, timeout=timeout, what=f"AI job {job_id} to finish")
    return found


def answer(data: dict[str, Any]) -> str:
    return json.dumps(data)
