"""The workspace mirror's reconcile (files/mirror.py): both ways, idempotent, in any order.

`api` is a file system like the API's: it commits and hands the paths to a sync that records
them and does nothing (a missed sync call). `host` keeps workspaces under a data dir of its
own, like an agent; what it is asked to reconcile it reads from PostgreSQL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from files.factory import build_blob_store
from files.mirror_record import parse_record
from files.service import FileSystem
from files.workspace import WorkspaceConflict
from store import db
from store import files as file_rows
from tests.support import create_project, register
from vaporform.config import Config


@dataclass
class Setup:
    api: FileSystem
    host: FileSystem
    pid: uuid.UUID
    asked: list[list[str]]

    @property
    def root(self) -> Path:
        return self.host.workspace(self.pid)

    async def current(self) -> dict[str, bytes]:
        found = {}
        for row in await self.api.listing(self.pid):
            got = await self.api.read(self.pid, row.path)
            assert got is not None
            found[row.path] = got.content
        return found

    def on_disk(self) -> dict[str, bytes]:
        found = {}
        for folder, _dirs, names in os.walk(self.root):
            for name in names:
                path = Path(folder) / name
                found[str(path.relative_to(self.root))] = path.read_bytes()
        return found


@pytest.fixture
async def pool(config: Config) -> AsyncIterator[asyncpg.Pool]:
    found = await db.create_pool(config.database_url, min_size=1, max_size=4)
    yield found
    await found.close()


def host_fs(config: Config, pool: asyncpg.Pool, data_dir: Path) -> FileSystem:
    return FileSystem(pool, build_blob_store(config), data_dir, workspace_uid=None)


@pytest.fixture
async def setup(
    http: httpx.AsyncClient, config: Config, pool: asyncpg.Pool, tmp_path: Path
) -> Setup:
    owner = await register(http, "mirror")
    pid = uuid.UUID((await create_project(http, owner))["id"])
    asked: list[list[str]] = []

    async def missed(project_id: uuid.UUID, paths: Sequence[str]) -> list[WorkspaceConflict]:
        asked.append(list(paths))
        return []

    api = FileSystem(pool, build_blob_store(config), tmp_path / "api", workspace_sync=missed)
    return Setup(api, host_fs(config, pool, tmp_path / "host"), pid, asked)


async def test_committed_changes_come_in_and_twice_is_once(setup: Setup, tmp_path: Path) -> None:
    api, host, pid = setup.api, setup.host, setup.pid
    await api.write_many(pid, [("a.txt", b"a\n"), ("b.txt", b"b\n")], author_id=None)
    assert setup.asked == [["a.txt", "b.txt"]]
    assert not (tmp_path / "api" / "workspaces").exists(), "the API keeps no workspace"
    assert await host.materialise(pid) == 2
    assert setup.on_disk() == {"a.txt": b"a\n", "b.txt": b"b\n"}

    # Missed: a move, a delete, a new version, a new file. One full reconcile catches up.
    await api.move(pid, "a.txt", "src/a.txt", author_id=None)
    await api.delete(pid, "b.txt", author_id=None)
    await api.write(pid, "src/a.txt", b"a2\n", author_id=None)
    await api.write(pid, "c.txt", b"c\n", author_id=None)
    done = await host.reconcile_workspace(pid)
    assert setup.on_disk() == {"src/a.txt": b"a2\n", "c.txt": b"c\n"}
    assert done.changed == []
    assert done.conflicts == []
    assert await setup.current() == {"src/a.txt": b"a2\n", "c.txt": b"c\n"}

    again = await host.reconcile_workspace(pid)
    assert (again.written, again.changed) == (0, [])
    # Named paths, out of order and repeated, change nothing more.
    for paths in (["c.txt", "a.txt"], ["src/a.txt", "b.txt", "a.txt"], ["c.txt"]):
        assert (await host.reconcile_workspace(pid, paths)).written == 0
    assert setup.on_disk() == {"src/a.txt": b"a2\n", "c.txt": b"c\n"}


async def test_a_move_is_followed_by_renaming_the_copy(setup: Setup) -> None:
    api, host, pid = setup.api, setup.host, setup.pid
    await api.write(pid, "old/f.txt", b"f\n", author_id=None)
    await host.materialise(pid)
    inode = (setup.root / "old/f.txt").stat().st_ino
    await api.move(pid, "old", "new", author_id=None)
    # Only the new path is named (the old one reached the agent some other way, or not).
    await host.reconcile_workspace(pid, ["new/f.txt"])
    assert (setup.root / "new/f.txt").stat().st_ino == inode
    assert not (setup.root / "old/f.txt").exists()
    assert await setup.current() == {"new/f.txt": b"f\n"}


async def test_a_programs_change_is_imported_not_written_over(setup: Setup) -> None:
    api, host, pid = setup.api, setup.host, setup.pid
    await api.write_many(pid, [("f.txt", b"one\n"), ("gone.txt", b"x\n")], author_id=None)
    await host.materialise(pid)
    # A program changes f and deletes gone; before the watcher reports it, a user writes f.
    (setup.root / "f.txt").write_bytes(b"from the program\n")
    (setup.root / "gone.txt").unlink()
    await api.write(pid, "f.txt", b"from the user\n", author_id=None)
    done = await host.reconcile_workspace(pid, ["f.txt", "gone.txt"])
    assert done.changed == ["f.txt", "gone.txt"]
    assert setup.on_disk() == {"f.txt": b"from the program\n"}
    assert await setup.current() == {"f.txt": b"from the program\n"}
    history = await api.history(pid, "f.txt")
    assert history is not None
    assert [(v.version, v.author_kind) for v in history] == [
        (3, "container"),
        (2, "user"),
        (1, "user"),
    ]

    # A file the program made where the database has none is imported too.
    (setup.root / "made.txt").write_bytes(b"new\n")
    assert (await host.reconcile_workspace(pid, ["made.txt"])).changed == ["made.txt"]


async def test_a_deletion_is_not_imported_over_a_newer_version(setup: Setup) -> None:
    api, host, pid = setup.api, setup.host, setup.pid
    await api.write(pid, "f.txt", b"one\n", author_id=None)
    await host.materialise(pid)
    (setup.root / "f.txt").unlink()
    await api.write(pid, "f.txt", b"two\n", author_id=None)
    done = await host.reconcile_workspace(pid)
    assert done.changed == []
    assert setup.on_disk() == {"f.txt": b"two\n"}


async def test_another_hosts_stale_copy_is_brought_up_to_date(
    setup: Setup, config: Config, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A host the project's container left keeps an old copy: PostgreSQL wins there, and
    nothing of the old copy is imported back."""
    api, here, pid = setup.api, setup.host, setup.pid
    await api.write(pid, "f.txt", b"one\n", author_id=None)
    await here.materialise(pid)
    elsewhere = host_fs(config, pool, tmp_path / "elsewhere")
    await elsewhere.materialise(pid)  # the container moved: the record is that host's now
    await api.write(pid, "f.txt", b"two\n", author_id=None)
    await elsewhere.reconcile_workspace(pid, ["f.txt"])
    (setup.root / "f.txt").write_bytes(b"stale edit\n")
    done = await here.reconcile_workspace(pid)
    assert done.changed == []
    assert setup.on_disk() == {"f.txt": b"two\n"}
    assert await setup.current() == {"f.txt": b"two\n"}


async def test_records_of_the_synchronous_mirror_still_read(setup: Setup) -> None:
    """Rows written before the mirror moved to the agent carry a bare "size:mtime_ns"."""
    api, host, pid = setup.api, setup.host, setup.pid
    await api.write(pid, "f.txt", b"one\n", author_id=None)
    await host.materialise(pid)
    info = (setup.root / "f.txt").stat()
    async with api.pool.acquire() as conn:
        await file_rows.set_mirror_stat(conn, pid, {"f.txt": f"{info.st_size}:{info.st_mtime_ns}"})
        row = await file_rows.get(conn, pid, "f.txt")
    assert row is not None
    assert parse_record(row.mirror_stat, "f.txt", "me") is not None
    assert (await host.reconcile_workspace(pid)).changed == []
    (setup.root / "f.txt").write_bytes(b"changed by a program\n")
    assert (await host.reconcile_workspace(pid)).changed == ["f.txt"]


async def test_no_workspace_here_stays_none(setup: Setup) -> None:
    await setup.api.write(setup.pid, "f.txt", b"x\n", author_id=None)
    done = await setup.host.reconcile_workspace(setup.pid)
    assert (done.written, done.changed) == (0, [])
    assert not setup.root.exists()
