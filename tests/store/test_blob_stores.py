"""One conformance suite for every implementation of the blob store port (store/blobs.py):
the local disk and S3 (a real SeaweedFS server, tests/seaweed.py). Then what rests on the port
works on both: garbage collection, rekeying, backup and restore, and the stored form is the
same bytes on either, so blobs move between them as they are."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities.files import FileActivities
from files.service import FileSystem
from store import db
from store.blob_keys import BlobKeyError, BlobKeyring, key_id_of
from store.blobs import BlobStore, LocalBlobStore, blob_key, rekey, sha256_hex
from tests.conftest import ADMIN_DSN
from tests.store.conftest import S3StoreFactory
from vaporform.backup import backup, restore
from workflows.files.contract import RetentionInput

Factory = Callable[..., BlobStore]


def ring(*keys: tuple[str, bytes]) -> BlobKeyring:
    return BlobKeyring(dict(keys), writer=keys[-1][0])


@pytest.fixture(params=["local", "s3"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    """A factory of stores of one backend: a new, empty one per call, or with `like=` one at
    the same place as another (the same blobs under another keyring)."""
    if request.param == "local":
        counter = iter(range(1_000))

        def local(keyring: BlobKeyring | None = None, *, like: Any = None) -> BlobStore:
            root = like.root if like is not None else tmp_path / f"blobs-{next(counter)}"
            return LocalBlobStore(root, keyring=keyring)

        return local
    factory: S3StoreFactory = request.getfixturevalue("s3_store_factory")

    def s3(keyring: BlobKeyring | None = None, *, like: Any = None) -> BlobStore:
        prefix = like.prefix if like is not None else f"t-{uuid.uuid4().hex[:12]}"
        return factory(keyring, prefix=prefix)

    return s3


async def listed(store: BlobStore) -> set[str]:
    return {sha async for sha in store.digests()}


async def test_put_get_exists_delete(make_store: Factory) -> None:
    store = make_store()
    assert await listed(store) == set()
    contents = [b"", b"x", os.urandom(70_000), "ünïcode\n".encode()]
    digests = [await store.put(content) for content in contents]
    assert digests == [hashlib.sha256(c).hexdigest() for c in contents]
    for sha, content in zip(digests, contents, strict=True):
        assert await store.exists(sha)
        assert await store.get(sha) == content
        assert await asyncio.to_thread(store.get_sync, sha) == content
        assert await store.read_stored(sha) == content  # no keyring: stored as it is
    assert await listed(store) == set(digests)
    # Putting identical content again stores nothing new.
    assert await store.put(contents[1]) == digests[1]
    assert await listed(store) == set(digests)
    assert await store.delete(digests[1]) is True
    assert await store.delete(digests[1]) is False
    assert not await store.exists(digests[1])
    assert await listed(store) == set(digests) - {digests[1]}
    await store.close()


async def test_a_missing_blob_is_file_not_found(make_store: Factory) -> None:
    store = make_store()
    absent = sha256_hex(b"never stored " + uuid.uuid4().bytes)
    assert not await store.exists(absent)
    with pytest.raises(FileNotFoundError):
        await store.get(absent)
    with pytest.raises(FileNotFoundError):
        await store.read_stored(absent)
    with pytest.raises(FileNotFoundError):
        await asyncio.to_thread(store.get_sync, absent)
    with pytest.raises(ValueError, match="not a sha256"):
        await store.get("../../etc/passwd")


async def test_concurrent_puts_of_the_same_content(make_store: Factory) -> None:
    store = make_store()
    content = os.urandom(4096)
    results = await asyncio.gather(*(store.put(content) for _ in range(8)))
    assert set(results) == {sha256_hex(content)}
    assert await listed(store) == {sha256_hex(content)}
    assert await store.get(results[0]) == content


async def test_encrypted_blobs(make_store: Factory) -> None:
    k1 = os.urandom(32)
    store = make_store(ring(("k1", k1)))
    content = b"secret " + os.urandom(32)
    sha = await store.put(content)
    assert sha == sha256_hex(content)  # the address stays the plaintext's hash
    stored = await store.read_stored(sha)
    assert key_id_of(stored) == "k1"
    assert content not in stored
    assert await store.get(sha) == content
    # The same bytes without the key: a clear error, never the ciphertext as content.
    without = make_store()
    await without.write_stored(sha, stored)
    with pytest.raises(BlobKeyError, match="no blob key is configured"):
        await without.get(sha)


async def test_rekey(make_store: Factory) -> None:
    k1, k2 = os.urandom(32), os.urandom(32)
    old = make_store(ring(("k1", k1)))
    shas = [await old.put(f"blob {n}".encode()) for n in range(3)]
    plain_sha = sha256_hex(b"from before any key")
    await old.write_stored(plain_sha, b"from before any key")
    rotated = make_store(ring(("k1", k1), ("k2", k2)), like=old)
    report = await rekey(rotated)
    assert (report.rewritten, report.current) == (4, 0)
    assert (await rekey(rotated)).current == 4
    for n, sha in enumerate(shas):
        assert key_id_of(await rotated.read_stored(sha)) == "k2"
        assert await rotated.get(sha) == f"blob {n}".encode()
    assert await rotated.get(plain_sha) == b"from before any key"
    # k1 can leave the ring now.
    assert await make_store(ring(("k2", k2)), like=old).get(shas[0]) == b"blob 0"


async def test_the_stored_form_moves_between_backends(
    tmp_path: Path, s3_store_factory: S3StoreFactory
) -> None:
    keyring = ring(("k1", os.urandom(32)))
    local = LocalBlobStore(tmp_path / "blobs", keyring=keyring)
    s3 = s3_store_factory(keyring)
    content = os.urandom(10_000)
    sha = await local.put(content)
    await s3.write_stored(sha, await local.read_stored(sha))
    assert await s3.read_stored(sha) == local.path_for(sha).read_bytes()
    assert await s3.get(sha) == content
    assert blob_key(sha) == f"{sha[:2]}/{sha[2:4]}/{sha}"


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Any]:
    found = await db.create_pool(database_url, min_size=1, max_size=4)
    yield found
    # The projects made here keep their blobs in stores of their own: remove them, so the
    # session's other GC tests never see references into stores they do not hold.
    async with found.acquire() as conn:
        await conn.execute("DELETE FROM projects WHERE name = 'blob-store-test'")
    await found.close()


async def _project(pool: Any) -> uuid.UUID:
    async with pool.acquire() as conn:
        owner = await conn.fetchval(
            "INSERT INTO users (email, name, password_hash) VALUES ($1, 'GC', 'x') RETURNING id",
            f"gc-{uuid.uuid4().hex[:10]}@example.com",
        )
        project: uuid.UUID = await conn.fetchval(
            "INSERT INTO projects (name, owner_id) VALUES ('blob-store-test', $1) RETURNING id",
            owner,
        )
    return project


async def test_garbage_collection(make_store: Factory, pool: Any, tmp_path: Path) -> None:
    store = make_store(ring(("k1", os.urandom(32))))
    fs = FileSystem(pool, store, tmp_path / "data", workspace_uid=None)
    project_id = await _project(pool)
    kept = f"kept {uuid.uuid4().hex}".encode()
    await fs.write(project_id, "kept.txt", kept, author_id=None)
    orphan = await store.put(f"orphan {uuid.uuid4().hex}".encode())
    result = await ActivityEnvironment().run(
        FileActivities(pool, fs, None).collect_garbage, RetentionInput()
    )
    assert (result.blobs_deleted, result.blobs_kept) == (1, 1)
    assert not await store.exists(orphan)
    found = await fs.read(project_id, "kept.txt")
    assert found is not None
    assert found.content == kept


@pytest.fixture
async def fresh_database() -> AsyncIterator[str]:
    url = db.with_database(ADMIN_DSN, f"vaporform_restore_{uuid.uuid4().hex[:12]}")
    yield url
    await db.drop_database(url)


async def test_backup_and_restore_through_s3(
    pool: Any,
    database_url: str,
    fresh_database: str,
    tmp_path: Path,
    s3_store_factory: S3StoreFactory,
) -> None:
    keyring = ring(("k1", os.urandom(32)))
    source = s3_store_factory(keyring, prefix=f"t-{uuid.uuid4().hex[:12]}")
    fs = FileSystem(pool, source, tmp_path / "data", workspace_uid=None)
    project_id = await _project(pool)
    written = {f"f{n}.txt": f"content {n} {uuid.uuid4().hex}".encode() for n in range(5)}
    for path, content in written.items():
        await fs.write(project_id, path, content, author_id=None)
    folder = tmp_path / "backup"
    summary = await backup(database_url, source, folder, lambda _: None)
    assert summary.blobs == 5
    target = s3_store_factory(keyring, prefix=f"t-{uuid.uuid4().hex[:12]}")
    await restore(fresh_database, target, folder, lambda _: None)
    for content in written.values():
        sha = sha256_hex(content)
        assert await target.read_stored(sha) == await source.read_stored(sha)
        assert await target.get(sha) == content


async def test_the_configuration_picks_the_backend(
    s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    from files.factory import build_blob_store
    from store.s3_blobs import S3BlobStore
    from tests.seaweed import ACCESS_KEY_ID, SECRET_ACCESS_KEY
    from vaporform.config import load_config
    from vaporform.settings.env import ConfigError

    base = {"VAPORFORM_DATA_DIR": str(tmp_path), "VAPORFORM_JWT_SECRET": "s" * 32}
    assert isinstance(build_blob_store(load_config(base)), LocalBlobStore)
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    config = load_config(
        {
            **base,
            "VAPORFORM_BLOB_STORE": "s3",
            "VAPORFORM_S3_ENDPOINT": s3_endpoint,
            "VAPORFORM_S3_BUCKET": s3_bucket,
            "VAPORFORM_S3_REGION": "us-east-1",
            "VAPORFORM_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "VAPORFORM_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "VAPORFORM_S3_PREFIX": prefix,
        }
    )
    store = build_blob_store(config)
    assert isinstance(store, S3BlobStore)
    assert store.describe() == f"s3://{s3_bucket}/{prefix}"
    sha = await store.put(b"configured")
    assert await store.get(sha) == b"configured"
    with pytest.raises(ConfigError, match="VAPORFORM_S3_BUCKET"):
        load_config({**base, "VAPORFORM_BLOB_STORE": "s3", "VAPORFORM_S3_BUCKET": "vf"})
    with pytest.raises(ConfigError, match="local or s3"):
        load_config({**base, "VAPORFORM_BLOB_STORE": "gcs"})
