"""The Files routes end to end over HTTP: versions, conflicts, search, archives, permissions."""

from __future__ import annotations

import asyncio
import base64
import io
import tarfile
from pathlib import Path
from typing import Any

import httpx

from tests.support import Account, assert_error, create_project, register


async def _project(http: httpx.AsyncClient) -> tuple[Account, str]:
    owner = await register(http, "owner")
    return owner, (await create_project(http, owner))["id"]


async def _put(
    http: httpx.AsyncClient, who: Account, pid: str, path: str, content: str, **extra: Any
) -> httpx.Response:
    return await http.put(
        f"/api/v1/projects/{pid}/files/{path}",
        json={"content": content, **extra},
        headers=who.headers,
    )


async def test_round_trip_of_versions_diff_restore_and_delete(http: httpx.AsyncClient) -> None:
    owner, pid = await _project(http)
    base = f"/api/v1/projects/{pid}"
    created = await _put(http, owner, pid, "src/app.py", "v1\n", message="first")
    assert created.status_code == 201
    assert created.json() == {"path": "src/app.py", "version": 1}
    for n in (2, 3, 4):
        updated = await _put(http, owner, pid, "src/app.py", f"v{n}\n")
        assert updated.status_code == 200
        assert updated.json()["version"] == n
    for n in (1, 2, 3, 4):
        got = await http.get(f"{base}/files/src/app.py?version={n}", headers=owner.headers)
        assert got.json()["content"] == f"v{n}\n"
        assert got.json()["version"] == n
    current = (await http.get(f"{base}/files/src/app.py", headers=owner.headers)).json()
    assert current["version"] == 4
    assert current["language"] == "python"
    assert current["encoding"] == "utf-8"
    assert current["size"] == 3
    assert len(current["sha256"]) == 64

    history = (await http.get(f"{base}/history?path=src/app.py", headers=owner.headers)).json()
    assert [v["version"] for v in history["items"]] == [4, 3, 2, 1]
    assert history["items"][-1]["message"] == "first"
    assert history["items"][0]["author_id"] == owner.id

    diff = (
        await http.get(f"{base}/diff?path=src/app.py&from=1&to=3", headers=owner.headers)
    ).json()["diff"]
    assert "-v1" in diff
    assert "+v3" in diff
    assert diff.startswith("--- a/src/app.py@1")

    restored = await http.post(
        f"{base}/restore", json={"path": "src/app.py", "version": 2}, headers=owner.headers
    )
    assert restored.json() == {"path": "src/app.py", "version": 5}
    got = (await http.get(f"{base}/files/src/app.py", headers=owner.headers)).json()
    assert got["content"] == "v2\n"

    assert (await http.delete(f"{base}/files/src/app.py", headers=owner.headers)).status_code == 204
    assert_error(await http.get(f"{base}/files/src/app.py", headers=owner.headers), 404)
    listed = (await http.get(f"{base}/files", headers=owner.headers)).json()["items"]
    assert listed == []
    # Old versions stay readable, and restore brings the file back as a new version.
    old = await http.get(f"{base}/files/src/app.py?version=3", headers=owner.headers)
    assert old.json()["content"] == "v3\n"
    back = await http.post(
        f"{base}/restore", json={"path": "src/app.py", "version": 4}, headers=owner.headers
    )
    assert back.json()["version"] == 6
    listed = (await http.get(f"{base}/files", headers=owner.headers)).json()["items"]
    assert [(f["path"], f["version"]) for f in listed] == [("src/app.py", 6)]


async def test_concurrent_writers_with_one_base_version(http: httpx.AsyncClient) -> None:
    owner, pid = await _project(http)
    await _put(http, owner, pid, "race.txt", "start")
    results = await asyncio.gather(
        *(_put(http, owner, pid, "race.txt", f"writer {i}", base_version=1) for i in range(8))
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] + [409] * 7
    for loser in (r for r in results if r.status_code == 409):
        error = assert_error(loser, 409, "version_conflict")
        assert error["details"]["current_version"] == 2
    history = await http.get(f"/api/v1/projects/{pid}/history?path=race.txt", headers=owner.headers)
    assert [v["version"] for v in history.json()["items"]] == [2, 1]
    created_twice = await asyncio.gather(
        *(_put(http, owner, pid, "new.txt", f"n{i}", base_version=0) for i in range(4))
    )
    assert sorted(r.status_code for r in created_twice) == [201, 409, 409, 409]


async def test_binary_files_round_trip_as_base64(http: httpx.AsyncClient) -> None:
    owner, pid = await _project(http)
    blob = bytes(range(256)) * 4
    response = await _put(
        http, owner, pid, "img/logo.png", base64.b64encode(blob).decode(), encoding="base64"
    )
    assert response.status_code == 201
    got = (
        await http.get(f"/api/v1/projects/{pid}/files/img/logo.png", headers=owner.headers)
    ).json()
    assert got["encoding"] == "base64"
    assert base64.b64decode(got["content"]) == blob
    bad = await _put(http, owner, pid, "x.bin", "not base64!!", encoding="base64")
    assert_error(bad, 400, "invalid_base64")


async def test_paths_sizes_and_permissions(http: httpx.AsyncClient, config: Any) -> None:
    owner, pid = await _project(http)
    viewer, stranger = await register(http, "viewer"), await register(http, "stranger")
    await http.post(
        f"/api/v1/projects/{pid}/members",
        json={"email": viewer.email, "role": "viewer"},
        headers=owner.headers,
    )
    await _put(http, owner, pid, "readme.md", "# hi")
    # (Dot segments never arrive over HTTP: clients resolve them; test_paths covers them.)
    for bad in ("a//b", "%2e%2e/x", "evil\u202etxt", "trailing%20"):
        assert_error(await _put(http, owner, pid, bad, "x"), 400, "invalid_path")
    huge = "x" * (config.max_file_bytes + 1)
    assert_error(await _put(http, owner, pid, "huge.txt", huge), 413, "too_large")

    base = f"/api/v1/projects/{pid}"
    assert (await http.get(f"{base}/files/readme.md", headers=viewer.headers)).status_code == 200
    assert_error(await _put(http, viewer, pid, "readme.md", "mine"), 403, "forbidden")
    assert_error(await http.delete(f"{base}/files/readme.md", headers=viewer.headers), 403)
    routes = [
        ("GET", f"{base}/files", None),
        ("GET", f"{base}/files/readme.md", None),
        ("PUT", f"{base}/files/readme.md", {"content": "x"}),
        ("DELETE", f"{base}/files/readme.md", None),
        ("POST", f"{base}/fs/move", {"from": "readme.md", "to": "b.md"}),
        ("GET", f"{base}/history?path=readme.md", None),
        ("GET", f"{base}/diff?path=readme.md&from=1&to=1", None),
        ("POST", f"{base}/restore", {"path": "readme.md", "version": 1}),
        ("GET", f"{base}/search?q=hi", None),
        ("GET", f"{base}/archive", None),
    ]
    for method, path, body in routes:
        response = await http.request(method, path, json=body, headers=stranger.headers)
        assert_error(response, 404, "not_found")
    got = await http.get(f"{base}/files/readme.md", headers=owner.headers)
    assert got.json()["content"] == "# hi"


async def test_move_files_and_folders(http: httpx.AsyncClient) -> None:
    owner, pid = await _project(http)
    base = f"/api/v1/projects/{pid}"
    for path in ("src/a.py", "src/pkg/b.py", "srcx/c.py", "top.txt"):
        await _put(http, owner, pid, path, path)
    moved = await http.post(
        f"{base}/fs/move", json={"from": "src", "to": "lib"}, headers=owner.headers
    )
    assert moved.status_code == 200
    assert sorted(m["to"] for m in moved.json()["moved"]) == ["lib/a.py", "lib/pkg/b.py"]
    listed = (await http.get(f"{base}/files", headers=owner.headers)).json()["items"]
    assert [f["path"] for f in listed] == ["lib/a.py", "lib/pkg/b.py", "srcx/c.py", "top.txt"]
    history = await http.get(f"{base}/history?path=lib/a.py", headers=owner.headers)
    assert history.json()["items"][0]["path"] == "src/a.py"  # history moves with the file
    clash = await http.post(
        f"{base}/fs/move", json={"from": "top.txt", "to": "srcx/c.py"}, headers=owner.headers
    )
    assert_error(clash, 409, "path_conflict")
    missing = await http.post(
        f"{base}/fs/move", json={"from": "nope", "to": "x"}, headers=owner.headers
    )
    assert_error(missing, 404, "not_found")
    prefix = await http.get(f"{base}/files?prefix=lib/pkg", headers=owner.headers)
    assert [f["path"] for f in prefix.json()["items"]] == ["lib/pkg/b.py"]


async def test_search_substring_regex_glob_and_deleted(http: httpx.AsyncClient) -> None:
    owner, pid = await _project(http)
    base = f"/api/v1/projects/{pid}"
    await _put(http, owner, pid, "src/a.py", "import os\n\ndef main():\n    print('hello 50%')\n")
    await _put(http, owner, pid, "src/b.py", "x = 1\n😀 hello = 2\n")
    await _put(http, owner, pid, "docs/hello.md", "say hello_world\n")
    await _put(http, owner, pid, "gone.txt", "hello\n")
    await http.delete(f"{base}/files/gone.txt", headers=owner.headers)

    hits = (await http.get(f"{base}/search", params={"q": "hello"}, headers=owner.headers)).json()
    found = [(h["path"], h["line"], h["column"]) for h in hits["items"]]
    # The emoji is two UTF-16 code units: the column counts them as an editor does.
    assert found == [("docs/hello.md", 1, 5), ("src/a.py", 4, 12), ("src/b.py", 2, 4)]
    assert hits["items"][1]["preview"] == "    print('hello 50%')"

    literal = await http.get(f"{base}/search", params={"q": "50%"}, headers=owner.headers)
    assert [h["path"] for h in literal.json()["items"]] == ["src/a.py"]
    underscore = await http.get(f"{base}/search", params={"q": "o_w"}, headers=owner.headers)
    assert [h["path"] for h in underscore.json()["items"]] == ["docs/hello.md"]

    regex = await http.get(
        f"{base}/search", params={"q": r"^def \w+\(", "regex": "true"}, headers=owner.headers
    )
    assert [(h["path"], h["line"], h["column"]) for h in regex.json()["items"]] == [
        ("src/a.py", 3, 1)
    ]
    globbed = await http.get(
        f"{base}/search", params={"q": "hello", "glob": "src/*.py"}, headers=owner.headers
    )
    assert [h["path"] for h in globbed.json()["items"]] == ["src/a.py", "src/b.py"]
    bad = await http.get(
        f"{base}/search", params={"q": "(unclosed", "regex": "true"}, headers=owner.headers
    )
    assert_error(bad, 400, "invalid_regex")
    assert_error(await http.get(f"{base}/search", headers=owner.headers), 400, "validation_error")


def _tar(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info, content in entries:
            if content is not None:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
            else:
                archive.addfile(info)
    return buffer.getvalue()


def _file(name: str, content: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), content


def _special(name: str, kind: bytes, target: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


async def test_archive_export_and_import(http: httpx.AsyncClient) -> None:
    owner, pid = await _project(http)
    base = f"/api/v1/projects/{pid}"
    await _put(http, owner, pid, "a.txt", "alpha")
    await _put(http, owner, pid, "dir/b.txt", "beta")
    exported = await http.get(f"{base}/archive", headers=owner.headers)
    assert exported.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(exported.content), mode="r:gz") as archive:
        names = {m.name: archive.extractfile(m).read() for m in archive}  # type: ignore[union-attr]
    assert names == {"a.txt": b"alpha", "dir/b.txt": b"beta"}

    body = _tar([_file("./new/c.txt", b"gamma"), _file("a.txt", b"alpha 2")])
    imported = await http.post(
        f"{base}/archive",
        content=body,
        headers={**owner.headers, "Content-Type": "application/gzip"},
    )
    assert imported.status_code == 200, imported.text
    assert sorted((f["path"], f["version"]) for f in imported.json()["files"]) == [
        ("a.txt", 2),
        ("new/c.txt", 1),
    ]


async def test_hostile_archives_are_rejected_whole(http: httpx.AsyncClient, data_dir: Path) -> None:
    owner, pid = await _project(http)
    base = f"/api/v1/projects/{pid}"
    good = _file("fine.txt", b"ok")
    Entry = tuple[tarfile.TarInfo, bytes | None]
    # A path the path gate refuses answers invalid_path, as on every route; anything else
    # wrong with the archive answers invalid_archive.
    hostile: dict[str, tuple[list[Entry], str]] = {
        "traversal": ([good, _file("../escape.txt", b"x")], "invalid_path"),
        "deep traversal": ([good, _file("a/../../escape.txt", b"x")], "invalid_path"),
        "absolute": ([good, _file("/etc/escape", b"x")], "invalid_path"),
        "symlink": ([good, _special("link", tarfile.SYMTYPE, "/etc/passwd")], "invalid_archive"),
        "hardlink": ([good, _special("hard", tarfile.LNKTYPE, "fine.txt")], "invalid_archive"),
        "device": ([good, _special("dev", tarfile.CHRTYPE)], "invalid_archive"),
        "fifo": ([good, _special("fifo", tarfile.FIFOTYPE)], "invalid_archive"),
        "huge file": ([good, _file("big.bin", b"\0" * (6 * 1024 * 1024))], "invalid_archive"),
        "duplicate": ([good, _file("fine.txt", b"again")], "invalid_archive"),
        "control chars": ([good, _file("bad\x01name", b"x")], "invalid_path"),
        "65 segments": ([good, _file("/".join(["d"] * 65), b"x")], "invalid_path"),
        "1,025 bytes": (
            [good, _file("/".join(["b" * 204] * 4 + ["b" * 205]), b"x")],
            "invalid_path",
        ),
    }
    for name, (entries, code) in hostile.items():
        response = await http.post(
            f"{base}/archive",
            content=_tar(entries),
            headers={**owner.headers, "Content-Type": "application/gzip"},
        )
        error = assert_error(response, 400, code)
        assert error["message"], name
    limits = {
        "65 segments": {"max_segments": 64},
        "1,025 bytes": {"max_bytes": 1024},
    }
    for name, limit in limits.items():
        response = await http.post(
            f"{base}/archive",
            content=_tar(hostile[name][0]),
            headers={**owner.headers, "Content-Type": "application/gzip"},
        )
        assert limit.items() <= response.json()["error"]["details"].items(), name
    not_gzip = await http.post(f"{base}/archive", content=b"plain", headers=owner.headers)
    assert_error(not_gzip, 400, "invalid_archive")
    listed = await http.get(f"{base}/files", headers=owner.headers)
    assert listed.json()["items"] == [], "nothing of a rejected archive may be written"
    escaped = [p for p in data_dir.rglob("escape*")]
    assert escaped == []


async def test_more_concurrent_writers_than_pooled_connections(
    http: httpx.AsyncClient, config: Any
) -> None:
    owner, pid = await _project(http)
    writers = config.db_pool_max * 3
    results = await asyncio.wait_for(
        asyncio.gather(*(_put(http, owner, pid, f"many/f{i}.txt", str(i)) for i in range(writers))),
        timeout=60,
    )
    assert [r.status_code for r in results] == [201] * writers
