"""Content-addressed blobs behind a port: the local disk (default) or an S3 bucket.

A blob's address is the sha256 of its content; it is written once and never changes, so
identical content is stored once and every copy of a blob (another backend, a backup) is
interchangeable. The key of a blob is `ab/cd/<sha256>` in either backend.

With a keyring (`VAPORFORM_BLOB_KEY` / `VAPORFORM_BLOB_KEYS`) the stored form is the content
encrypted (store/blob_keys.py); the address stays the sha256 of the plaintext. The stored
form is the same bytes on every backend, so `read_stored` / `write_stored` (backups, rekeying)
copy blobs between backends without the keys. Everything that reads blob contents goes
through `get` (or `get_sync`, for the tar stream of `GET /archive`, which runs in a thread).

Implementations: `LocalBlobStore` here, `S3BlobStore` in store/s3_blobs.py; both pass the one
conformance suite (tests/store/test_blob_stores.py). `files.factory.build_blob_store` picks
one from the configuration (`VAPORFORM_BLOB_STORE=local|s3`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from store.blob_keys import BlobKeyring, key_id_of, open_blob

_HEX = frozenset("0123456789abcdef")


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def is_digest(name: str) -> bool:
    return len(name) == 64 and all(c in _HEX for c in name)


def blob_key(sha256: str) -> str:
    """Where a blob lives below a store's root: `ab/cd/<sha256>` (both backends, backups)."""
    if not is_digest(sha256):
        raise ValueError(f"not a sha256: {sha256!r}")
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


def stored_form(keyring: BlobKeyring | None, sha256: str, content: bytes) -> bytes:
    return content if keyring is None else keyring.seal(sha256, content)


@dataclass(frozen=True, slots=True)
class RekeyReport:
    rewritten: int = 0  # plaintext or under an older key, now under the writing key
    current: int = 0  # already under the writing key


class BlobStore(Protocol):
    """The blob store port. A missing blob raises FileNotFoundError (get, read_stored)."""

    keyring: BlobKeyring | None

    def describe(self) -> str:
        """Where the blobs are, for messages (`/data/blobs`, `s3://bucket/prefix`)."""
        ...

    async def put(self, content: bytes) -> str:
        """Store `content` (sealed when a keyring is set) unless present; its sha256."""
        ...

    async def get(self, sha256: str) -> bytes:
        """The content; BlobKeyError when the keys cannot open it."""
        ...

    def get_sync(self, sha256: str) -> bytes:
        """`get` for code running in a thread (the archive stream)."""
        ...

    async def exists(self, sha256: str) -> bool: ...

    async def delete(self, sha256: str) -> bool:
        """Remove the blob; False when it was not there."""
        ...

    def digests(self) -> AsyncIterator[str]:
        """Every stored blob's address (garbage collection, backups, rekeying)."""
        ...

    async def read_stored(self, sha256: str) -> bytes:
        """The bytes as stored (encrypted blobs stay encrypted)."""
        ...

    async def write_stored(self, sha256: str, data: bytes) -> None:
        """Store bytes in their stored form under `sha256`, replacing what is there
        atomically (restores, rekeying). The caller vouches that `data` opens to `sha256`."""
        ...

    async def close(self) -> None: ...


async def rekey(blobs: BlobStore) -> RekeyReport:
    """Rewrite every blob not under the writing key (plaintext ones too) with it, so an old
    key can leave the ring. Safe while the system runs: a rewrite replaces the blob atomically
    with the same content."""
    keyring = blobs.keyring
    if keyring is None:
        raise ValueError("no blob key is configured: nothing to encrypt with")
    rewritten = current = 0
    async for sha256 in blobs.digests():
        try:
            data = await blobs.read_stored(sha256)
        except FileNotFoundError:  # collected meanwhile
            continue
        if key_id_of(data) == keyring.writer:
            current += 1
            continue
        plain = open_blob(keyring, sha256, data)
        await blobs.write_stored(sha256, keyring.seal(sha256, plain))
        rewritten += 1
    return RekeyReport(rewritten=rewritten, current=current)


class LocalBlobStore:
    """Blobs as files `<root>/ab/cd/<sha256>`, written to a temporary file in the same folder,
    fsynced, then renamed into place: a reader never sees half a blob and a crash leaves at
    most a stray temp file (`.tmp-*`, never listed)."""

    def __init__(self, root: Path, keyring: BlobKeyring | None = None) -> None:
        self.root = root
        self.keyring = keyring

    def describe(self) -> str:
        return str(self.root)

    def path_for(self, sha256: str) -> Path:
        return self.root / blob_key(sha256)

    def _put(self, content: bytes, sha256: str) -> None:
        target = self.path_for(sha256)
        if target.exists():
            return
        self._write(target, stored_form(self.keyring, sha256, content))

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
        return open_blob(self.keyring, sha256, self.path_for(sha256).read_bytes())

    async def get(self, sha256: str) -> bytes:
        return await asyncio.to_thread(self.get_sync, sha256)

    async def exists(self, sha256: str) -> bool:
        return await asyncio.to_thread(self.path_for(sha256).exists)

    def _delete(self, sha256: str) -> bool:
        try:
            self.path_for(sha256).unlink()
            return True
        except FileNotFoundError:
            return False

    async def delete(self, sha256: str) -> bool:
        return await asyncio.to_thread(self._delete, sha256)

    def all_digests(self) -> Iterator[str]:
        if not self.root.exists():
            return
        for first in self.root.iterdir():
            if not first.is_dir():
                continue
            for second in first.iterdir():
                for blob in second.iterdir():
                    if is_digest(blob.name):  # not a `.tmp-*` of a write in progress
                        yield blob.name

    async def digests(self) -> AsyncIterator[str]:
        for sha256 in await asyncio.to_thread(lambda: list(self.all_digests())):
            yield sha256

    async def read_stored(self, sha256: str) -> bytes:
        return await asyncio.to_thread(self.path_for(sha256).read_bytes)

    async def write_stored(self, sha256: str, data: bytes) -> None:
        await asyncio.to_thread(self._write, self.path_for(sha256), data)

    async def close(self) -> None:
        return None
