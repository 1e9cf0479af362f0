"""Backup and restore of a project of many files.

    python bench/backup_bench.py [--files 10000]

Starts a throwaway stack, seeds one project through archive import (the files bench's
archive), then times `backup` into a new folder and `restore` into a fresh database and data
dir, and prints the sizes. Runs the same code as `vaporform backup` / `vaporform restore`.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.files_bench import seed_archive
from bench.stack import bench_user, running_stack
from store import db
from store.blobs import LocalBlobStore
from vaporform.backup import backup, restore


async def seed(url: str, files: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        headers = await bench_user(client, "backup-bench")
        project = await client.post("/api/v1/projects", json={"name": "big"}, headers=headers)
        project.raise_for_status()
        started = time.perf_counter()
        seeded = await client.post(
            f"/api/v1/projects/{project.json()['id']}/archive",
            content=seed_archive(files),
            headers={**headers, "Content-Type": "application/gzip"},
        )
        seeded.raise_for_status()
        print(f"seeded {files} files by archive import in {time.perf_counter() - started:.1f} s")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="vf-backup-bench-"))
    try:
        async with running_stack() as found:
            await seed(found.base_url, args.files)
            database_url = found.env["DATABASE_URL"]
            blobs = LocalBlobStore(found.data_dir / "blobs")
            made = await backup(database_url, blobs, scratch / "backup", lambda _: None)
            print(
                f"backup:  {made.seconds:.2f} s  ({made.blobs} blobs, "
                f"{made.blob_bytes / 1e6:.1f} MB of blobs, dump {made.dump_bytes / 1e6:.1f} MB)"
            )
            target_url = db.with_database(
                database_url, f"vaporform_restored_{uuid.uuid4().hex[:8]}"
            )
            try:
                target = LocalBlobStore(scratch / "restored" / "blobs")
                back = await restore(target_url, target, scratch / "backup", lambda _: None)
                print(f"restore: {back.seconds:.2f} s  (into a fresh database and data dir)")
            finally:
                await db.drop_database(target_url)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
