"""Content-addressed blobs on disk: `<root>/ab/cd/<sha256>`, written once, atomically.

A blob is written to a temporary file in the same folder, fsynced, then renamed into place,
so a reader never sees half a blob and a crash leaves at most a stray temp file. Identical
content is stored once.

With a keyring (`VAPORFORM_BLOB_KEY` / `VAPORFORM_BLOB_KEYS`) the file holds the content
encrypted (store/blob_keys.py), temporary files included; the address stays the sha256 of the
plaintext. Everything that reads blob contents goes through `get` / `get_sync`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from store.blob_keys import BlobKeyring, key_id_of, open_blob


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@dataclass(frozen=True, slots=True)
class RekeyReport:
    rewritten: int = 0  # plaintext or under an older key, now under the writing key
    current: int = 0  # already under the writing key


class BlobStore:
    def __init__(self, root: Path, keyring: BlobKeyring | None = None) -> None:
        self.root = root
        self.keyring = keyring

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def _stored_form(self, sha256: str, content: bytes) -> bytes:
        return content if self.keyring is None else self.keyring.seal(sha256, content)

    def _put(self, content: bytes, sha256: str) -> None:
        target = self.path_for(sha256)
        if target.exists():
            return
        self._write(target, self._stored_form(sha256, content))

    def _write(self, target: Path, data: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
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
        """The content stored under `sha256`; BlobKeyError when the keys cannot open it."""
        return open_blob(self.keyring, sha256, self.path_for(sha256).read_bytes())

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

    def rekey(self) -> RekeyReport:
        """Rewrite every blob not under the writing key (plaintext ones too) with it, so an old
        key can leave the ring. Safe while the system runs: a rewrite replaces the file
        atomically with the same content."""
        if self.keyring is None:
            raise ValueError("no blob key is configured: nothing to encrypt with")
        rewritten = current = 0
        for sha256 in list(self.all_digests()):
            target = self.path_for(sha256)
            try:
                data = target.read_bytes()
            except FileNotFoundError:  # collected meanwhile
                continue
            if key_id_of(data) == self.keyring.writer:
                current += 1
                continue
            self._write(target, self._stored_form(sha256, open_blob(self.keyring, sha256, data)))
            rewritten += 1
        return RekeyReport(rewritten=rewritten, current=current)

    def delete(self, sha256: str) -> bool:
        try:
            self.path_for(sha256).unlink()
            return True
        except FileNotFoundError:
            return False
