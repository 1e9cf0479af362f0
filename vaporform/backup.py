"""`vaporform backup DIR` and `vaporform restore DIR`: the database and the blobs, consistently.

A backup is a folder:

    manifest.json    format, time, migration level, the dump's sha256, every blob's sha256
                     and stored size
    database.dump    `pg_dump --format=custom` (one snapshot of the whole database)
    ab/cd/<sha256>   the blobs as stored (encrypted ones stay encrypted: restoring needs
                     the same VAPORFORM_BLOB_KEY(S)), from whichever blob store is configured
                     (local or S3); a backup restores into either

Consistency: the snapshot names blobs that must all be copied. Blobs are written before the
version naming them commits, and never change; only garbage collection removes them. So the
backup holds the GC lock (shared, as writers do) from before the snapshot until the last
blob is copied: every blob the snapshot names is still there to copy. Blobs written after the
snapshot are copied too, harmlessly.

Not in a backup: workspaces (materialised again from the database when a container starts),
Temporal's state (workflows are restarted by what the database records: the outbox, container
status), Redis (ephemeral by design).

Restore goes into an empty database and an empty blob folder only, checks every checksum
against the manifest, and restores the dump in one transaction: it succeeds whole or leaves
nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from store import db, locks
from store.blobs import BlobStore, blob_key

FORMAT = "vaporform-backup/1"
Progress = Callable[[str], None]


class BackupError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Summary:
    blobs: int
    blob_bytes: int
    dump_bytes: int
    seconds: float


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is missing: apt-get install -y postgresql-client")
    return found


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{what} failed ({done.returncode}): {done.stderr.strip()[-500:]}")


def _every(count: int) -> int:
    return max(1000, count // 10)


async def backup(database_url: str, blobs: BlobStore, out: Path, progress: Progress) -> Summary:
    started = time.perf_counter()
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out} is not empty: a backup goes into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    conn = await db.connect(database_url)
    try:
        # Held from before the snapshot until every blob is copied (see the module docstring).
        await locks.share_gc_lock_for_session(conn)
        level = await _migration_level(conn)
        progress("dumping the database (pg_dump, one snapshot)")
        dump = out / "database.dump"
        _run([_tool("pg_dump"), "--format=custom", f"--file={dump}", database_url], "pg_dump")
        digests = sorted([sha256 async for sha256 in blobs.digests()])
        progress(f"copying {len(digests)} blobs from {blobs.describe()}")
        listed: dict[str, int] = {}
        total = 0
        for count, sha256 in enumerate(digests, start=1):
            try:
                data = await blobs.read_stored(sha256)
            except FileNotFoundError:  # only a blob written and collected after the listing
                continue
            target = out / blob_key(sha256)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            size = len(data)
            listed[sha256] = size
            total += size
            if count % _every(len(digests)) == 0:
                progress(f"  {count}/{len(digests)} blobs")
    finally:
        await conn.close()  # releases the GC lock
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "migration_level": level,
        "database": {"file": "database.dump", "sha256": _file_sha256(dump)},
        "encrypted_blobs": blobs.keyring is not None,
        "blobs": listed,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    fsync_tree(out)
    seconds = time.perf_counter() - started
    progress(f"backup complete: {len(listed)} blobs, {total} bytes, in {seconds:.1f} s")
    return Summary(len(listed), total, dump.stat().st_size, seconds)


async def _migration_level(conn: asyncpg.Connection) -> int:
    try:
        level = await conn.fetchval("SELECT max(version) FROM schema_migrations")
    except asyncpg.UndefinedTableError:
        return 0
    return int(level or 0)


def read_manifest(folder: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((folder / "manifest.json").read_text())
    except FileNotFoundError:
        raise BackupError(f"{folder} holds no manifest.json: not a backup") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"unknown backup format {manifest.get('format')!r}")
    return manifest


async def restore(database_url: str, blobs: BlobStore, folder: Path, progress: Progress) -> Summary:
    started = time.perf_counter()
    manifest = read_manifest(folder)
    dump = folder / manifest["database"]["file"]
    progress("checking the dump's checksum")
    if _file_sha256(dump) != manifest["database"]["sha256"]:
        raise BackupError("database.dump does not match its checksum: the backup is damaged")
    async for _ in blobs.digests():
        raise BackupError(f"{blobs.describe()} is not empty: restore into an empty blob store")
    await db.ensure_database(database_url)
    conn = await db.connect(database_url)
    try:
        tables = await conn.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', "
            "'information_schema')"
        )
    finally:
        await conn.close()
    if tables:
        raise BackupError(
            f"{db.redact(database_url)} already has tables: restore into an empty one"
        )
    listed: dict[str, int] = manifest["blobs"]
    progress(f"copying {len(listed)} blobs")
    total = 0
    for count, (sha256, size) in enumerate(sorted(listed.items()), start=1):
        source = folder / blob_key(sha256)
        if not source.exists() or source.stat().st_size != size:
            raise BackupError(f"blob {sha256} is missing or truncated in the backup")
        await blobs.write_stored(sha256, source.read_bytes())
        total += size
        if count % _every(len(listed)) == 0:
            progress(f"  {count}/{len(listed)} blobs")
    progress("checking blob contents")
    for sha256 in listed:
        # Opening checks the plaintext against its address (and needs the keys if encrypted).
        if hashlib.sha256(await blobs.get(sha256)).hexdigest() != sha256:
            raise BackupError(f"blob {sha256} does not match its address")
    progress("restoring the database (pg_restore, one transaction)")
    _run(
        [
            _tool("pg_restore"),
            "--single-transaction",
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
            f"--dbname={database_url}",
            str(dump),
        ],
        "pg_restore",
    )
    seconds = time.perf_counter() - started
    progress(f"restore complete: {len(listed)} blobs, {total} bytes, in {seconds:.1f} s")
    return Summary(len(listed), total, dump.stat().st_size, seconds)


def fsync_tree(folder: Path) -> None:
    """Make a finished backup durable before it is reported done."""
    for path, _dirs, names in os.walk(folder):
        for name in names:
            fd = os.open(os.path.join(path, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
