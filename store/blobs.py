"""Content-addressed blobs on disk: `<root>/ab/cd/<sha256>`, written once, atomically.

A blob is written to a temporary file in the same folder, fsynced, then renamed into place,
so a reader never sees half a blob and a crash leaves at most a stray temp file. Identical
content is stored once.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def _put(self, content: bytes, sha256: str) -> None:
        target = self.path_for(sha256)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        # The rename is durable only once its folder is.
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    async def put(self, content: bytes) -> str:
        sha256 = sha256_hex(content)
        await asyncio.to_thread(self._put, content, sha256)
        return sha256

    def get_sync(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()

    async def get(self, sha256: str) -> bytes:
        return await asyncio.to_thread(self.get_sync, sha256)

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).exists()

    def all_digests(self) -> Iterator[str]:
        if not self.root.exists():
            return
        for first in self.root.iterdir():
            if not first.is_dir():
                continue
            for second in first.iterdir():
                for blob in second.iterdir():
                    if not blob.name.startswith(".tmp-"):
                        yield blob.name

    def delete(self, sha256: str) -> bool:
        try:
            self.path_for(sha256).unlink()
            return True
        except FileNotFoundError:
            return False
