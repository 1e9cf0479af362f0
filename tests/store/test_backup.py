"""`vaporform backup` then `vaporform restore` into a fresh database and data dir: the
project, its versions, its blobs and its chat come back equal; a damaged backup and a
non-empty target are refused."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from store import chat, db
from store.blobs import LocalBlobStore
from tests.conftest import ADMIN_DSN
from tests.support import create_project, register, wait_until
from vaporform.backup import BackupError, backup, restore

PROJECT_ROWS = {
    "projects": "SELECT * FROM projects WHERE id = $1",
    "files": "SELECT * FROM files WHERE project_id = $1 ORDER BY path",
    "file_versions": (
        "SELECT v.* FROM file_versions v JOIN files f ON f.id = v.file_id"
        " WHERE f.project_id = $1 ORDER BY f.path, v.version"
    ),
    "collab_chat": "SELECT * FROM collab_chat WHERE project_id = $1 ORDER BY message_id",
    "project_members": "SELECT * FROM project_members WHERE project_id = $1 ORDER BY user_id",
}


async def _rows(url: str, project_id: uuid.UUID) -> dict[str, list[dict[str, Any]]]:
    conn = await db.connect(url)
    try:
        return {
            name: [dict(row) for row in await conn.fetch(query, project_id)]
            for name, query in PROJECT_ROWS.items()
        }
    finally:
        await conn.close()


async def _seeded_project(http: httpx.AsyncClient, database_url: str) -> uuid.UUID:
    owner = await register(http, "backup")
    pid = (await create_project(http, owner, name="to keep"))["id"]
    base = f"/api/v1/projects/{pid}/files"
    for index in range(20):
        put = await http.put(
            f"{base}/src/m{index}.py", json={"content": f"x = {index}\n"}, headers=owner.headers
        )
        assert put.status_code == 201, put.text
    again = await http.put(
        f"{base}/src/m0.py", json={"content": "x = 'second'\n"}, headers=owner.headers
    )
    assert again.status_code == 200, again.text
    binary = await http.put(
        f"{base}/logo.bin",
        json={"content": "AAEC/w==", "encoding": "base64"},
        headers=owner.headers,
    )
    assert binary.status_code == 201, binary.text
    conn = await db.connect(database_url)
    try:
        for text in ("hello", "the backup keeps this"):
            await chat.add_chat(conn, uuid.UUID(pid), uuid.UUID(owner.id), "Ada", text)

        # The versioning workflow refreshes `metadata.files` after the writes: let it finish
        # first, or the snapshot and the live row can differ by it.
        async def stats_current() -> bool:
            metadata = await conn.fetchval("SELECT metadata FROM projects WHERE id = $1", pid)
            return bool((metadata or {}).get("files", {}).get("count") == 21)

        await wait_until(stats_current, timeout=30, what="the project's file stats")
    finally:
        await conn.close()
    return uuid.UUID(pid)


@pytest.fixture
async def fresh_database() -> Any:
    url = db.with_database(ADMIN_DSN, f"vaporform_restore_{uuid.uuid4().hex[:12]}")
    yield url
    await db.drop_database(url)


async def test_backup_then_restore_gives_the_same_project(
    http: httpx.AsyncClient,
    database_url: str,
    data_dir: Path,
    tmp_path: Path,
    fresh_database: str,
) -> None:
    pid = await _seeded_project(http, database_url)
    source = LocalBlobStore(data_dir / "blobs")
    lines: list[str] = []
    folder = tmp_path / "backup"
    summary = await backup(database_url, source, folder, lines.append)
    assert summary.blobs >= 22
    assert any("dumping" in line for line in lines)
    assert "backup complete" in lines[-1]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["migration_level"] >= 6

    target = LocalBlobStore(tmp_path / "restored-data" / "blobs")
    await restore(fresh_database, target, folder, lines.append)
    assert await _rows(fresh_database, pid) == await _rows(database_url, pid)
    for row in (await _rows(database_url, pid))["file_versions"]:
        assert target.get_sync(row["sha256"]) == source.get_sync(row["sha256"])

    # Restoring again over what is now there is refused, before anything is touched.
    with pytest.raises(BackupError, match="not empty"):
        await restore(fresh_database, target, folder, lines.append)
    other = LocalBlobStore(tmp_path / "other" / "blobs")
    with pytest.raises(BackupError, match="already has tables"):
        await restore(fresh_database, other, folder, lines.append)


async def test_a_damaged_backup_is_refused(
    http: httpx.AsyncClient, database_url: str, data_dir: Path, tmp_path: Path
) -> None:
    await _seeded_project(http, database_url)
    folder = tmp_path / "backup"
    await backup(database_url, LocalBlobStore(data_dir / "blobs"), folder, lambda _: None)
    with pytest.raises(BackupError, match="not empty"):
        await backup(database_url, LocalBlobStore(data_dir / "blobs"), folder, lambda _: None)
    dump = folder / "database.dump"
    dump.write_bytes(dump.read_bytes()[:-10])
    target = LocalBlobStore(tmp_path / "restored" / "blobs")
    with pytest.raises(BackupError, match="checksum"):
        await restore(db.with_database(ADMIN_DSN, "unused"), target, folder, lambda _: None)
    assert not target.root.exists()


def test_the_command_reports_a_missing_backup(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vaporform.cli", "restore", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        env={"DATABASE_URL": ADMIN_DSN, "VAPORFORM_DATA_DIR": str(tmp_path / "data"),
             "PATH": "/usr/bin:/bin"},
        check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "not a backup" in done.stderr
