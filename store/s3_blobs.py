"""`S3BlobStore`: the blob store port on an S3 bucket (AWS, SeaweedFS, MinIO, R2, ...).

Objects are `<prefix>/ab/cd/<sha256>`, holding the same stored form as the local files
(plaintext, or sealed by the keyring), so blobs move between backends byte for byte. A PUT is
atomic in S3: a reader sees the whole object or none, so no temporary objects are needed.
`obstore` (Rust `object_store`) gives both async calls and the blocking ones the archive
stream needs from its thread.

Retries: the client retries a failed request a few times within a short budget (a request
path waits on it), and Temporal retries the activities around it (DESIGN decision 1) for
anything longer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import obstore
from obstore.store import S3Store

from store.blob_keys import BlobKeyring, open_blob
from store.blobs import blob_key, is_digest, sha256_hex, stored_form


class S3BlobStore:
    def __init__(
        self,
        bucket: str,
        *,
        endpoint: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        prefix: str = "blobs",
        keyring: BlobKeyring | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.keyring = keyring
        settings: dict[str, Any] = {"region": region}
        if endpoint:
            settings["endpoint"] = endpoint.rstrip("/")
            # Self-hosted servers (SeaweedFS, MinIO) answer on one host: path-style requests.
            settings["virtual_hosted_style_request"] = False
        if access_key_id and secret_access_key:
            settings["access_key_id"] = access_key_id
            settings["secret_access_key"] = secret_access_key
        self._store = S3Store(
            bucket,
            prefix=self.prefix or None,
            client_options={
                "allow_http": bool(endpoint and endpoint.startswith("http://")),
                "connect_timeout": timedelta(seconds=5),
                "timeout": timedelta(seconds=30),
            },
            retry_config={"max_retries": 3, "retry_timeout": timedelta(seconds=15)},
            **settings,
        )

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    async def exists(self, sha256: str) -> bool:
        try:
            await obstore.head_async(self._store, blob_key(sha256))
        except FileNotFoundError:
            return False
        return True

    async def put(self, content: bytes) -> str:
        sha256 = sha256_hex(content)
        if not await self.exists(sha256):
            # Two writers racing both PUT the same content: either object is the blob.
            data = stored_form(self.keyring, sha256, content)
            await obstore.put_async(self._store, blob_key(sha256), data)
        return sha256

    async def read_stored(self, sha256: str) -> bytes:
        found = await obstore.get_async(self._store, blob_key(sha256))
        return bytes(await found.bytes_async())

    async def get(self, sha256: str) -> bytes:
        return open_blob(self.keyring, sha256, await self.read_stored(sha256))

    def get_sync(self, sha256: str) -> bytes:
        data = bytes(obstore.get(self._store, blob_key(sha256)).bytes())
        return open_blob(self.keyring, sha256, data)

    async def write_stored(self, sha256: str, data: bytes) -> None:
        await obstore.put_async(self._store, blob_key(sha256), data)

    async def delete(self, sha256: str) -> bool:
        if not await self.exists(sha256):
            return False
        await obstore.delete_async(self._store, blob_key(sha256))
        return True

    async def digests(self) -> AsyncIterator[str]:
        async for chunk in obstore.list(self._store, chunk_size=1000):
            for meta in chunk:
                name = meta["path"].rpartition("/")[2]
                if is_digest(name) and meta["path"] == blob_key(name):
                    yield name

    async def close(self) -> None:
        return None  # obstore's client has no close; its connections go with the object
