"""File operations on a project of many files under concurrent clients.

    python bench/files_bench.py [--files 10000] [--clients 50] [--requests 2000] [--url URL]

Seeds one project through archive import, then measures, closed loop: read of a random file,
write of a random file (a new version), and search for a token found in ~1% of the files.
Prints p50/p95/p99 and throughput; every write is committed before its answer.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import sys
import tarfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadclient import ConnectionPool
from bench.stack import bench_user, stack
from bench.stats import measure


def seed_archive(count: int) -> bytes:
    """`count` small Python modules in 100 folders; every 100th holds the search token."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for i in range(count):
            body = f"def function_{i}(x):\n    return x * {i}\n".encode()
            if i % 100 == 0:
                body += b"# NEEDLE marker line\n"
            info = tarfile.TarInfo(f"pkg{i % 100}/module_{i}.py")
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


async def bench(url: str, files: int, clients: int, total: int) -> None:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        headers = await bench_user(client, "files-bench")
        project = await client.post("/api/v1/projects", json={"name": "big"}, headers=headers)
        base = f"/api/v1/projects/{project.json()['id']}"
        started = time.perf_counter()
        seeded = await client.post(
            f"{base}/archive",
            content=seed_archive(files),
            headers={**headers, "Content-Type": "application/gzip"},
        )
        seeded.raise_for_status()
        print(f"seeded {files} files by archive import in {time.perf_counter() - started:.1f} s")
        paths = [f"pkg{i % 100}/module_{i}.py" for i in range(files)]
        rng = random.Random(7)

    pool = ConnectionPool(url, clients)
    await pool.open()

    async def read(i: int) -> None:
        status, body = await pool.request(
            "GET", f"{base}/files/{rng.choice(paths)}", headers=headers
        )
        assert status == 200, (status, body)

    async def write(i: int) -> None:
        status, body = await pool.request(
            "PUT",
            f"{base}/files/{rng.choice(paths)}",
            json_body={"content": f"# edit {i}\nvalue = {i}\n"},
            headers=headers,
        )
        assert status in (200, 201), (status, body)

    async def search(i: int) -> None:
        status, body = await pool.request("GET", f"{base}/search?q=NEEDLE", headers=headers)
        assert status == 200, (status, body)
        assert json.loads(body)["items"], "the token is in the project"

    try:
        print(f"{clients} concurrent clients, project of {files} files")
        await measure("warm-up (read)", clients, min(200, total), read)
        await measure("GET file", clients, total, read)
        await measure("PUT file (new version)", clients, total, write)
        await measure("GET search (substring)", clients, max(50, total // 4), search)
        await measure("GET file, 1 client", 1, 200, read)
        await measure("PUT file, 1 client", 1, 200, write)
        await measure("GET search, 1 client", 1, 100, search)
    finally:
        pool.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.url:
        await bench(args.url, args.files, args.clients, args.requests)
        return
    async with stack() as url:
        await bench(url, args.files, args.clients, args.requests)


if __name__ == "__main__":
    asyncio.run(main())
