"""`vaporform blobs rekey`, `vaporform backup` and `vaporform restore`: the stored data as a
whole."""

from __future__ import annotations

import sys
from pathlib import Path

from vaporform.config import Config


async def rekey_blobs(config: Config) -> int:
    from files.factory import build_blob_store
    from store.blob_keys import BlobKeyError
    from store.blobs import rekey

    if config.blob_keys is None:
        print("error: set VAPORFORM_BLOB_KEY or VAPORFORM_BLOB_KEYS first", file=sys.stderr)
        return 2
    store = build_blob_store(config)
    try:
        report = await rekey(store)
    except BlobKeyError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(
        f"rewritten with key {config.blob_keys.writer!r}: {report.rewritten}; "
        f"already under it: {report.current}"
    )
    return 0


async def run_backup(config: Config, command: str, folder: Path) -> int:
    from files.factory import build_blob_store
    from vaporform.backup import BackupError, backup, restore

    blobs = build_blob_store(config)
    run = backup if command == "backup" else restore
    try:
        await run(config.database_url, blobs, folder, lambda line: print(line, flush=True))
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
