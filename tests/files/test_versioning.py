"""The workspace mirror, the versioning entity workflow, retention and blob GC."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import asyncpg
import httpx
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.files import FileActivities
from collab.broker import RedisBroker
from collab.channels import files_channel
from files.factory import build_filesystem
from files.workspace import workspace_dir, workspaces_root
from store import db
from tests.conftest import REDIS_URL
from tests.support import Account, create_project, register, wait_until
from vaporform.config import Config
from vaporform.temporal_setup import signal_files_changed
from vaporform.workspace_watch import watch_workspaces
from workflows.files.contract import RetentionInput, RetentionOutput
from workflows.files.versioning import RetentionWorkflow


async def _project(http: httpx.AsyncClient, **fields: object) -> tuple[Account, str]:
    owner = await register(http, "owner")
    return owner, (await create_project(http, owner, **fields))["id"]


async def _put(http: httpx.AsyncClient, who: Account, pid: str, path: str, text: str) -> int:
    response = await http.put(
        f"/api/v1/projects/{pid}/files/{path}", json={"content": text}, headers=who.headers
    )
    assert response.status_code in (200, 201), response.text
    return int(response.json()["version"])


async def test_api_writes_reach_the_workspace(
    http: httpx.AsyncClient, config: Config, data_dir: Path
) -> None:
    """The API keeps no workspace (no container runs here, so no agent is asked); a host that
    has one brings each change in by reconciling the paths announced (agent/workspaces.py)."""
    owner, pid = await _project(http)
    await _put(http, owner, pid, "src/main.py", "print('hi')\n")
    root = workspace_dir(data_dir, uuid.UUID(pid))
    assert not root.exists()
    pool = await db.create_pool(config.database_url, min_size=1, max_size=2)
    try:
        host = build_filesystem(config, pool)
        await host.materialise(uuid.UUID(pid))
        assert (root / "src/main.py").read_text() == "print('hi')\n"
        await http.post(
            f"/api/v1/projects/{pid}/fs/move",
            json={"from": "src", "to": "lib"},
            headers=owner.headers,
        )
        await host.reconcile_workspace(uuid.UUID(pid), ["src/main.py", "lib/main.py"])
        assert (root / "lib/main.py").exists()
        assert not (root / "src/main.py").exists()
        await http.delete(f"/api/v1/projects/{pid}/files/lib/main.py", headers=owner.headers)
        await host.reconcile_workspace(uuid.UUID(pid), ["lib/main.py"])
        assert not (root / "lib/main.py").exists()
    finally:
        await pool.close()


async def test_container_changes_become_versions(
    http: httpx.AsyncClient, temporal_client: Client, config: Config, data_dir: Path
) -> None:
    owner, pid = await _project(http)
    await _put(http, owner, pid, "keep.txt", "one")
    await _put(http, owner, pid, "doomed.txt", "bye")
    root = workspace_dir(data_dir, uuid.UUID(pid))
    pool = await db.create_pool(config.database_url, min_size=1, max_size=2)
    try:
        # What a container start does on its host.
        await build_filesystem(config, pool).materialise(uuid.UUID(pid))
    finally:
        await pool.close()
    stop = asyncio.Event()

    async def report(project_id: str, paths: list[str] | None) -> None:
        await signal_files_changed(
            temporal_client, config.task_queue, project_id, paths, "workspace"
        )

    ready = asyncio.Event()
    watcher = asyncio.create_task(watch_workspaces(workspaces_root(data_dir), report, stop, ready))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        # What a program in the container would do.
        (root / "out").mkdir()
        (root / "out/result.txt").write_text("computed\n")
        (root / "keep.txt").write_text("two")
        (root / "doomed.txt").unlink()
        (root / "bad\x01name").write_text("refused")

        async def imported() -> bool:
            listed = await http.get(f"/api/v1/projects/{pid}/files", headers=owner.headers)
            paths = {f["path"]: f["version"] for f in listed.json()["items"]}
            return paths == {"keep.txt": 2, "out/result.txt": 1}

        await wait_until(imported, timeout=20, what="the workspace changes to be imported")
    finally:
        stop.set()
        await watcher
    history = await http.get(f"/api/v1/projects/{pid}/history?path=keep.txt", headers=owner.headers)
    newest = history.json()["items"][0]
    assert newest["author"] == "container"
    assert newest["author_id"] is None
    got = await http.get(f"/api/v1/projects/{pid}/files/out/result.txt", headers=owner.headers)
    assert got.json()["content"] == "computed\n"


async def test_changes_are_announced_and_stats_kept(
    http: httpx.AsyncClient, config: Config
) -> None:
    owner, pid = await _project(http)
    broker = RedisBroker(REDIS_URL, prefix=config.redis_prefix)
    received: list[dict[str, object]] = []
    subscription = await broker.subscribe(
        files_channel(pid), lambda raw: received.append(json.loads(raw))
    )
    try:
        await _put(http, owner, pid, "a.py", "x = 1\n")
        await _put(http, owner, pid, "b.md", "# b\n")

        async def announced() -> bool:
            paths = {p for m in received for p in m["paths"]}  # type: ignore[attr-defined]
            return paths == {"a.py", "b.md"}

        await wait_until(announced, timeout=15, what="the change announcement")
        assert all(m["type"] == "files_changed" for m in received)

        async def stats() -> bool:
            project = await http.get(f"/api/v1/projects/{pid}", headers=owner.headers)
            found: object = project.json()["metadata"].get("files")
            return found == {
                "count": 2,
                "bytes": 10,
                "languages": {"python": 1, "markdown": 1},
            }

        await wait_until(stats, timeout=15, what="the project stats")
    finally:
        await subscription.unsubscribe()
        await broker.close()


async def test_retention_prunes_versions_and_collects_blobs(
    http: httpx.AsyncClient, temporal_client: Client, config: Config, database_url: str
) -> None:
    owner, pid = await _project(http, config={"retention": {"keep_versions": 2}})
    keeper, keeper_pid = await _project(http)
    for n in range(1, 6):
        await _put(http, owner, pid, "f.txt", f"retention version {n} {pid}")
        await _put(http, keeper, keeper_pid, "f.txt", f"kept version {n} {keeper_pid}")
    result = await temporal_client.execute_workflow(
        RetentionWorkflow.run,
        RetentionInput(),
        id=f"retention-test-{uuid.uuid4().hex}",
        task_queue=config.task_queue,
    )
    assert isinstance(result, RetentionOutput)
    assert result.versions_pruned >= 3
    assert result.blobs_deleted >= 3
    history = await http.get(f"/api/v1/projects/{pid}/history?path=f.txt", headers=owner.headers)
    assert [v["version"] for v in history.json()["items"]] == [5, 4]
    kept = await http.get(
        f"/api/v1/projects/{keeper_pid}/history?path=f.txt", headers=keeper.headers
    )
    assert len(kept.json()["items"]) == 5
    for n in (1, 2, 3, 4, 5):
        got = await http.get(
            f"/api/v1/projects/{keeper_pid}/files/f.txt?version={n}", headers=keeper.headers
        )
        assert got.json()["content"] == f"kept version {n} {keeper_pid}"
    pruned = await http.get(f"/api/v1/projects/{pid}/files/f.txt?version=1", headers=owner.headers)
    assert pruned.status_code == 404


async def test_gc_never_deletes_a_referenced_blob(config: Config, http: httpx.AsyncClient) -> None:
    _owner, pid = await _project(http)
    project_id = uuid.UUID(pid)
    pool = await db.create_pool(config.database_url, min_size=2, max_size=8)
    fs = build_filesystem(config, pool)
    activities = FileActivities(pool, fs, None)
    env = ActivityEnvironment()
    stop = asyncio.Event()

    async def writer(n: int) -> None:
        for i in range(25):
            # Half the writes reuse content a deleted version used, racing the collector.
            content = f"content {i % 5} of writer {n % 2}".encode()
            await fs.write(project_id, f"w{n}/f{i % 3}.txt", content, author_id=None)

    async def collector() -> int:
        runs = 0
        while not stop.is_set():
            await env.run(activities.collect_garbage, RetentionInput())
            runs += 1
        return runs

    try:
        gc = asyncio.create_task(collector())
        await asyncio.gather(*(writer(n) for n in range(6)))
        stop.set()
        assert await gc >= 1
        conn: asyncpg.Connection = await db.connect(config.database_url)
        try:
            # This project's: other tests of the session keep their blobs in stores of their
            # own (another data dir, S3) and share this database.
            rows = await conn.fetch(
                "SELECT DISTINCT v.sha256 FROM file_versions v JOIN files f ON f.id = v.file_id"
                " WHERE f.project_id = $1",
                project_id,
            )
            referenced = {r["sha256"] for r in rows}
        finally:
            await conn.close()
        missing = [d for d in referenced if not await fs.blobs.exists(d)]
        assert missing == []
        for row in await fs.listing(project_id):
            found = await fs.read(project_id, row.path)
            assert found is not None
            assert found.sha256 == row.sha256
    finally:
        await pool.close()
