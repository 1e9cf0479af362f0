"""Container actions leave audit rows, and a `containers_running` quota counts what the user
runs: API -> Temporal -> Docker engine, all real."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from temporalio.client import Client
from websockets.asyncio.client import connect

from store import db
from tests.conftest import Server
from tests.support import assert_error, create_project, register, wait_until
from tests.web.admin_support import make_admin, rows, wait_for_row
from vaporform.config import Config
from workflows.containers.names import container_workflow_id

SMALL = {"cpus": 0.5, "memory_mb": 64, "pids": 64}


@pytest.fixture
async def pool(container_config: Config) -> AsyncIterator[asyncpg.Pool]:
    found = await db.create_pool(container_config.database_url, min_size=1, max_size=2)
    yield found
    await found.close()


async def test_container_actions_are_audited_and_the_running_quota_holds(
    http: httpx.AsyncClient, container_server: Server, pool: asyncpg.Pool, temporal_client: Client
) -> None:
    admin = await make_admin(http, pool)
    user = await register(http, "runner")
    first = (await create_project(http, user))["id"]
    second = (await create_project(http, user))["id"]
    quota = await http.put(
        f"/api/v1/admin/users/{user.id}/quotas",
        json={"containers_running": 1},
        headers=admin.headers,
    )
    assert quota.status_code == 200, quota.text

    async def start(pid: str) -> httpx.Response:
        return await http.post(
            f"/api/v1/projects/{pid}/container", json={"resources": SMALL}, headers=user.headers
        )

    started = await start(first)
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "running"
    # Asking again for a container that runs adds none: allowed.
    assert (await start(first)).status_code == 202
    error = assert_error(await start(second), 400, "quota_exceeded")
    assert error["details"] == {"limit": "containers_running", "requested": 2, "maximum": 1}

    ran = await http.post(
        f"/api/v1/projects/{first}/container/exec",
        json={"command": ["echo", "audited"]},
        headers=user.headers,
    )
    assert ran.status_code == 200, ran.text
    url = container_server.base_url.replace("http://", "ws://")
    async with connect(
        f"{url}/api/v1/projects/{first}/terminal", additional_headers=user.headers
    ) as ws:
        opened = await wait_for_row(pool, project=first, action="terminal.opened")
        await ws.close()
    stopped = await http.post(f"/api/v1/projects/{first}/container/stop", headers=user.headers)
    assert stopped.status_code == 202, stopped.text

    found = [r for r in await rows(pool, project=first) if r["action"].startswith(("c", "t"))]
    assert [r["action"] for r in found] == [
        "container.started",
        "container.started",
        "container.exec",
        "terminal.opened",
        "container.stopped",
    ]
    assert {r["actor_id"] for r in found} == {uuid.UUID(user.id)}
    assert found[0]["target"] == container_workflow_id(first)
    assert found[0]["details"]["status"] == "running"
    assert found[2]["details"] == {"command": ["echo", "audited"], "exit_code": 0}
    assert opened["target"] == started.json()["container_id"]

    # Its workflow ended with the container: the second project may have one now.
    query = (
        "WorkflowType = 'ContainerWorkflow' AND ExecutionStatus = 'Running' "
        f"AND UserId = '{user.id}'"
    )

    async def none_running() -> bool:
        return (await temporal_client.count_workflows(query)).count == 0

    await wait_until(none_running, timeout=20, what="the first container's workflow to end")
    again = await start(second)
    assert again.status_code == 202, again.text
    await http.post(f"/api/v1/projects/{second}/container/stop", headers=user.headers)
