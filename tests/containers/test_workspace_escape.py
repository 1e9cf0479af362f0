"""A hostile program in a real container plants links, loops and FIFOs in `/workspace`; every
REST route, the collaboration socket and the workspace import must stay inside the workspace.

The canary is a folder on the host that a link made in the container names. The container
cannot see it (its own `/tmp` is a tmpfs), but the API resolves paths on the host: before the
mirror walked by descriptor, `PUT .../files/t/pwned.txt` wrote into it. Each case checks that
the canary is byte for byte what it was, that the refusal is a JSON 409 naming the path, and
that what the user wrote is still a version in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import io
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from collab import ot
from files.service import FileSystem
from tests.collab.conftest import WSClient
from tests.conftest import Server
from tests.support import Account, assert_error, create_project, register, wait_until

SMALL = {"cpus": 0.5, "memory_mb": 64, "pids": 64}


@pytest.fixture
def canary() -> Iterator[Path]:
    """A host folder with one file in it, compared before and after each hostile step."""
    folder = Path("/tmp") / f"vf-canary-{uuid.uuid4().hex}"
    folder.mkdir()
    (folder / "victim.txt").write_text("host data\n")
    yield folder
    for entry in folder.iterdir():
        entry.unlink()
    folder.rmdir()


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {entry.name: entry.read_bytes() for entry in sorted(folder.iterdir())}


class Project:
    def __init__(self, http: httpx.AsyncClient, owner: Account, pid: str) -> None:
        self.http = http
        self.owner = owner
        self.pid = pid
        self.base = f"/api/v1/projects/{pid}"

    async def sh(self, script: str, timeout_s: int = 30) -> dict[str, Any]:
        done = await self.http.post(
            f"{self.base}/container/exec",
            json={"command": ["sh", "-c", script], "timeout_s": timeout_s},
            headers=self.owner.headers,
        )
        assert done.status_code == 200, done.text
        result: dict[str, Any] = done.json()
        assert result["exit_code"] == 0, result
        return result

    async def put(self, path: str, content: str) -> httpx.Response:
        return await self.http.put(
            f"{self.base}/files/{path}", json={"content": content}, headers=self.owner.headers
        )

    async def content(self, path: str) -> str | None:
        got = await self.http.get(f"{self.base}/files/{path}", headers=self.owner.headers)
        if got.status_code == 404:
            return None
        assert got.status_code == 200, got.text
        text: str = got.json()["content"]
        return text


@pytest.fixture
async def project(http: httpx.AsyncClient) -> Project:
    owner = await register(http, "hostile")
    pid = (await create_project(http, owner))["id"]
    found = Project(http, owner, pid)
    started = await http.post(f"{found.base}/container", json={"resources": SMALL},
                              headers=owner.headers)  # fmt: skip
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "running", started.json()
    return found


def _conflict(response: httpx.Response, path: str) -> dict[str, Any]:
    error = assert_error(response, 409, "workspace_conflict")
    assert error["details"]["path"] == path, error
    return error


async def test_links_and_fifos_never_reach_the_host(
    project: Project, canary: Path, files: FileSystem, data_dir: Path
) -> None:
    before = _snapshot(canary)
    await project.sh(
        f"ln -s / /workspace/h && ln -s {canary} /workspace/t && ln -s loop /workspace/loop"
        " && ln -s l2 /workspace/l1 && ln -s l1 /workspace/l2 && mkfifo /workspace/fifo"
        f" && ln -s {canary}/victim.txt /workspace/victim.txt"
    )
    refusals = 0
    # Writes through a link to a folder, to the root, through loops and a FIFO.
    cases = {
        "t/pwned.txt": "t",
        f"h{canary}/pwned.txt": "h",
        "h/tmp/pwned.txt": "h",
        "loop/x.txt": "loop",
        "l1/x.txt": "l1",
        "fifo/x.txt": "fifo",
        "fifo": "fifo",
        "t": "t",
        "victim.txt": "victim.txt",
    }
    for path, offender in cases.items():
        response = await project.put(path, f"user text for {path}\n")
        _conflict(response, offender)
        refusals += 1
        # Nothing the user wrote is lost: the version is in PostgreSQL.
        assert await project.content(path) == f"user text for {path}\n", path
        assert _snapshot(canary) == before, path
    assert not (Path("/tmp") / "pwned.txt").exists()

    # Deleting and moving through links leaves the host alone too.
    deleted = await project.http.delete(
        f"{project.base}/files/victim.txt", headers=project.owner.headers
    )
    _conflict(deleted, "victim.txt")
    assert (await project.put("src/a.txt", "a\n")).status_code == 201
    moved = await project.http.post(
        f"{project.base}/fs/move",
        json={"from": "src/a.txt", "to": "t/a.txt"},
        headers=project.owner.headers,
    )
    _conflict(moved, "t")
    assert await project.content("t/a.txt") == "a\n"
    _conflict(await project.put("t/pwned.txt", "second version\n"), "t")
    restored = await project.http.post(
        f"{project.base}/restore",
        json={"path": "t/pwned.txt", "version": 1},
        headers=project.owner.headers,
    )
    _conflict(restored, "t")
    refusals += 4
    assert _snapshot(canary) == before

    # An archive import writes every version, then reports the refused workspace copies.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in {"t/from-archive.txt": b"x\n", "ok/fine.txt": b"fine\n"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    imported = await project.http.post(
        f"{project.base}/archive",
        content=buffer.getvalue(),
        headers={**project.owner.headers, "Content-Type": "application/gzip"},
    )
    _conflict(imported, "t")
    refusals += 1
    assert await project.content("ok/fine.txt") == "fine\n"
    assert await project.content("t/from-archive.txt") == "x\n"
    workspace = data_dir / "workspaces" / project.pid
    assert (workspace / "ok" / "fine.txt").read_text() == "fine\n"

    # The export comes from the database: the versions, never what the links point at.
    exported = await project.http.get(f"{project.base}/archive", headers=project.owner.headers)
    assert exported.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(exported.content), mode="r:gz") as archive:
        names = set(archive.getnames())
        contents = b"".join(
            handle.read()
            for member in archive.getmembers()
            if (handle := archive.extractfile(member)) is not None
        )
    assert "t/pwned.txt" in names
    assert b"host data" not in contents

    # The container-side objects are all still there, untouched.
    listed = await project.sh(
        "ls -la /workspace && test -L /workspace/t && test -p /workspace/fifo"
    )
    assert "t ->" in listed["stdout"]

    # The import (what the watcher triggers) skips links and FIFOs, and never hangs on one.
    report = await asyncio.wait_for(files.sync_from_workspace(uuid.UUID(project.pid)), 30)
    assert {"h", "t", "loop", "l1", "l2", "fifo", "victim.txt"} <= set(report.skipped), report
    # A link standing where a tracked file is imports as nothing: the version stays.
    assert await project.content("t") == "user text for t\n"
    assert await project.content("fifo") == "user text for fifo\n"
    listing = await project.http.get(f"{project.base}/files", headers=project.owner.headers)
    paths = {item["path"] for item in listing.json()["items"]}
    assert report.imported == [], report
    assert not any(p.startswith("h/etc") or p == "t/victim.txt" for p in paths), paths
    assert _snapshot(canary) == before
    assert refusals >= 13


async def test_a_folder_swapped_for_a_link_during_writes(project: Project, canary: Path) -> None:
    """The race: `r` flips between a real folder and a link to the host while we write into
    it. Each write lands in the real folder or is refused; the host never sees one."""
    before = _snapshot(canary)
    flipper = asyncio.create_task(
        project.sh(
            "end=$(( $(date +%s) + 6 )); while [ $(date +%s) -lt $end ]; do"
            f" rm -rf /workspace/r; mkdir /workspace/r; rm -rf /workspace/r;"
            f" ln -s {canary} /workspace/r; done; rm -rf /workspace/r",
            timeout_s=20,
        )
    )
    outcomes: dict[int, int] = {}
    writes = 0
    while not flipper.done():
        writes += 1
        response = await project.put(f"r/f{writes % 5}.txt", f"write {writes}\n")
        outcomes[response.status_code] = outcomes.get(response.status_code, 0) + 1
        assert response.status_code in (200, 201, 409), response.text
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "workspace_conflict"
        assert _snapshot(canary) == before, f"write {writes} reached the host"
    await flipper
    assert writes >= 20, outcomes
    assert _snapshot(canary) == before


async def test_collaboration_checkpoints_keep_out_of_links(
    project: Project, canary: Path, container_server: Server
) -> None:
    before = _snapshot(canary)
    assert (await project.put("c/doc.txt", "hello\n")).status_code == 201
    # The program swaps the folder of an open document for a link to the host.
    await project.sh(f"rm -rf /workspace/c && ln -s {canary} /workspace/c")
    ws = await WSClient.connect(container_server, project.pid, project.owner.access_token)
    try:
        joined = await ws.join("c/doc.txt")
        revision = joined["payload"]["revision"]
        op: ot.Op = [6, "world\n"]
        ref = await ws.send("op", {"path": "c/doc.txt", "revision": revision, "op": op, "seq": 1})
        ack = await ws.reply(ref)
        assert ack["type"] == "ack", ack
        await ws.reply(await ws.send("leave", {"path": "c/doc.txt"}))
    finally:
        await ws.close()

    async def checkpointed() -> bool:
        return await project.content("c/doc.txt") == "hello\nworld\n"

    await wait_until(checkpointed, timeout=20, what="the checkpoint as a version")
    assert _snapshot(canary) == before
    assert not (canary / "doc.txt").exists()
