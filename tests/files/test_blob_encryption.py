"""Encryption at rest of blob contents: through the API with real servers and workers (each
on a data directory and task queue of its own), and the blob store and its keyring directly."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

import worker as worker_module
from activities.files import FileActivities
from files.factory import build_filesystem
from store import db
from store.blob_keys import (
    BlobKeyError,
    BlobKeyring,
    key_id_of,
    open_blob,
    parse_keyring,
)
from store.blobs import LocalBlobStore, sha256_hex
from tests.conftest import api_client
from tests.support import Account, assert_error, create_project, register
from vaporform.commands.data import rekey_blobs
from vaporform.config import Config, load_config
from vaporform.settings.env import ConfigError
from workflows.files.contract import RetentionInput


def new_key() -> bytes:
    return os.urandom(32)


def ring(*keys: tuple[str, bytes]) -> BlobKeyring:
    return BlobKeyring(dict(keys), writer=keys[-1][0])


@pytest.fixture
def own(config: Config, tmp_path: Path) -> Config:
    """The session's database and Temporal, with a data directory and task queue of its own:
    other tests never meet these blobs (nor dedupe onto them)."""
    return replace(
        config,
        data_dir=tmp_path / "data",
        task_queue=f"{config.task_queue}-blobs-{uuid.uuid4().hex[:8]}",
    )


@pytest.fixture
async def projects(config: Config) -> AsyncIterator[list[str]]:
    """Projects made here, deleted afterwards: their versions name blobs of another data
    directory, and the session's checks expect every version's blob in the session's store."""
    made: list[str] = []
    yield made
    conn = await db.connect(config.database_url)
    try:
        await conn.execute("DELETE FROM projects WHERE id = ANY($1::uuid[])", made)
    finally:
        await conn.close()


async def new_project(http: httpx.AsyncClient, owner: Account, made: list[str]) -> str:
    pid: str = (await create_project(http, owner))["id"]
    made.append(pid)
    return pid


@asynccontextmanager
async def stack(
    temporal_client: Client, config: Config, keyring: BlobKeyring | None
) -> AsyncIterator[httpx.AsyncClient]:
    """An API server and a worker whose blob stores use `keyring`."""
    keyed = replace(config, blob_keys=keyring)
    pool = await db.create_pool(keyed.database_url, min_size=1, max_size=4)
    try:
        with ThreadPoolExecutor(max_workers=4) as executor:
            async with (
                worker_module.build_worker(
                    temporal_client,
                    pool,
                    keyed.task_queue,
                    executor,
                    files=build_filesystem(keyed, pool),
                ),
                api_client(keyed) as http,
            ):
                yield http
    finally:
        await pool.close()


async def put(http: httpx.AsyncClient, who: Account, pid: str, path: str, content: bytes) -> str:
    response = await http.put(
        f"/api/v1/projects/{pid}/files/{path}",
        json={"content": base64.b64encode(content).decode(), "encoding": "base64"},
        headers=who.headers,
    )
    assert response.status_code in (200, 201), response.text
    return sha256_hex(content)


async def get(http: httpx.AsyncClient, who: Account, pid: str, path: str) -> httpx.Response:
    return await http.get(f"/api/v1/projects/{pid}/files/{path}", headers=who.headers)


async def content_of(http: httpx.AsyncClient, who: Account, pid: str, path: str) -> bytes:
    response = await get(http, who, pid, path)
    assert response.status_code == 200, response.text
    body = response.json()
    raw = body["content"]
    return base64.b64decode(raw) if body["encoding"] == "base64" else str(raw).encode()


def blob_file(config: Config, sha256: str) -> Path:
    return LocalBlobStore(config.data_dir / "blobs").path_for(sha256)


def everything_under(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


async def test_with_a_key_no_plaintext_reaches_the_blob_store(
    temporal_client: Client, own: Config, projects: list[str]
) -> None:
    secret = f"the secret sauce {uuid.uuid4().hex}".encode()
    binary = os.urandom(3000) + secret
    async with stack(temporal_client, own, ring(("k1", new_key()))) as http:
        owner = await register(http, "owner")
        pid = await new_project(http, owner, projects)
        text_sha = await put(http, owner, pid, "src/recipe.txt", secret)
        binary_sha = await put(http, owner, pid, "img/blob.bin", binary)
        # Reads round-trip, and the address is still the plaintext's sha256.
        assert await content_of(http, owner, pid, "src/recipe.txt") == secret
        assert await content_of(http, owner, pid, "img/blob.bin") == binary
        got = (await get(http, owner, pid, "src/recipe.txt")).json()
        assert got["sha256"] == hashlib.sha256(secret).hexdigest() == text_sha
        search = await http.get(
            f"/api/v1/projects/{pid}/search", params={"q": "secret sauce"}, headers=owner.headers
        )
        assert [hit["path"] for hit in search.json()["items"]] == ["src/recipe.txt"]
        # The export is made from decrypted contents, in memory.
        exported = await http.get(f"/api/v1/projects/{pid}/archive", headers=owner.headers)
        assert exported.status_code == 200, exported.text
        with tarfile.open(fileobj=io.BytesIO(exported.content), mode="r:gz") as archive:
            members = {m.name: archive.extractfile(m) for m in archive.getmembers()}
            assert {name: f.read() for name, f in members.items() if f} == {
                "src/recipe.txt": secret,
                "img/blob.bin": binary,
            }
    for sha in (text_sha, binary_sha):
        stored = blob_file(own, sha).read_bytes()
        assert key_id_of(stored) == "k1"
        assert secret not in stored
    assert secret not in everything_under(own.data_dir / "blobs")


async def test_keys_rotate_and_a_missing_or_wrong_key_fails_clearly(
    temporal_client: Client, own: Config, projects: list[str]
) -> None:
    k1, k2 = new_key(), new_key()
    old, new = b"written under k1 " + os.urandom(8), b"written under k2 " + os.urandom(8)
    async with stack(temporal_client, own, ring(("k1", k1))) as http:
        owner = await register(http, "owner")
        pid = await new_project(http, owner, projects)
        old_sha = await put(http, owner, pid, "old.txt", old)
    # A second key: it writes, and the first still reads what it wrote.
    async with stack(temporal_client, own, ring(("k1", k1), ("k2", k2))) as http:
        assert await content_of(http, owner, pid, "old.txt") == old
        new_sha = await put(http, owner, pid, "new.txt", new)
    assert key_id_of(blob_file(own, old_sha).read_bytes()) == "k1"
    assert key_id_of(blob_file(own, new_sha).read_bytes()) == "k2"

    # Without k2, or with another key under its name, or with no key: a clear 500.
    for keyring, says in (
        (ring(("k1", k1)), "the keyring lacks it"),
        (ring(("k1", k1), ("k2", new_key())), "the key is wrong"),
        (None, "no blob key is configured"),
    ):
        async with stack(temporal_client, own, keyring) as http:
            error = assert_error(await get(http, owner, pid, "new.txt"), 500, "blob_unreadable")
            assert says in error["message"], error
            assert error["details"] == {"sha256": new_sha, "key_id": "k2"}
            refused = await http.get(f"/api/v1/projects/{pid}/archive", headers=owner.headers)
            assert_error(refused, 500, "blob_unreadable")

    # Rekeying moves every blob under the writing key; then k1 can leave the ring.
    rotated = replace(own, blob_keys=ring(("k1", k1), ("k2", k2)))
    assert await rekey_blobs(rotated) == 0
    assert key_id_of(blob_file(own, old_sha).read_bytes()) == "k2"
    async with stack(temporal_client, own, ring(("k2", k2))) as http:
        assert await content_of(http, owner, pid, "old.txt") == old
        assert await content_of(http, owner, pid, "new.txt") == new


async def test_plaintext_blobs_from_before_the_key_still_read(
    temporal_client: Client, own: Config, projects: list[str]
) -> None:
    plain = f"stored before any key {uuid.uuid4().hex}".encode()
    async with stack(temporal_client, own, None) as http:
        owner = await register(http, "owner")
        pid = await new_project(http, owner, projects)
        sha = await put(http, owner, pid, "plain.txt", plain)
    assert blob_file(own, sha).read_bytes() == plain
    async with stack(temporal_client, own, ring(("k1", new_key()))) as http:
        assert await content_of(http, owner, pid, "plain.txt") == plain
        # Writing the same content again dedupes onto the existing blob: not a new version.
        again = await http.put(
            f"/api/v1/projects/{pid}/files/plain.txt",
            json={"content": plain.decode()},
            headers=owner.headers,
        )
        assert again.json()["version"] == 1


async def test_gc_collects_encrypted_blobs_and_keeps_referenced_ones(
    config: Config, own: Config, http: httpx.AsyncClient, projects: list[str]
) -> None:
    owner = await register(http, "owner")
    project_id = uuid.UUID(await new_project(http, owner, projects))
    keyed = replace(own, blob_keys=ring(("k1", new_key())))
    pool = await db.create_pool(config.database_url, min_size=1, max_size=4)
    try:
        fs = build_filesystem(keyed, pool)
        kept = f"kept {uuid.uuid4().hex}".encode()
        await fs.write(project_id, "kept.txt", kept, author_id=None)
        # Stored but never referenced (a write that failed after storing its blob).
        orphan = await fs.blobs.put(f"orphan {uuid.uuid4().hex}".encode())
        assert key_id_of(blob_file(own, orphan).read_bytes()) == "k1"
        result = await ActivityEnvironment().run(
            FileActivities(pool, fs, None).collect_garbage, RetentionInput()
        )
        assert result.blobs_deleted == 1
        assert not await fs.blobs.exists(orphan)
        found = await fs.read(project_id, "kept.txt")
        assert found is not None
        assert found.content == kept
    finally:
        await pool.close()


# --- the blob store and the keyring, without servers ----------------------------------------


async def test_blob_store_round_trip_and_header(tmp_path: Path) -> None:
    keyring = ring(("k1", new_key()))
    store = LocalBlobStore(tmp_path, keyring=keyring)
    for content in (b"", b"x", b"VFBE\x01 looks like a header", os.urandom(70_000)):
        sha = await store.put(content)
        assert sha == hashlib.sha256(content).hexdigest()
        assert await store.get(sha) == content
        stored = store.path_for(sha).read_bytes()
        assert key_id_of(stored) == "k1"
        # A byte or two of plaintext turns up in random ciphertext by chance (a 1-byte
        # content does in about 1 run in 7): only a longer one shows the content is sealed.
        if len(content) >= 16:
            assert content not in stored
        assert stored != content
    # The address is authenticated: a blob moved under another address does not open.
    one, other = await store.put(b"one"), await store.put(b"other")
    store.path_for(other).write_bytes(store.path_for(one).read_bytes())
    with pytest.raises(BlobKeyError, match="wrong or the blob is damaged"):
        store.get_sync(other)


def test_a_plaintext_blob_that_starts_like_a_header_reads_as_it_is(tmp_path: Path) -> None:
    content = b"VFBE\x01\x02k1" + b"\x00" * 40
    sha = sha256_hex(content)
    assert open_blob(ring(("k1", new_key())), sha, content) == content
    assert open_blob(None, sha, content) == content


def test_keyring_from_the_environment(tmp_path: Path) -> None:
    one, two = new_key(), new_key()
    b64 = base64.b64encode
    env = {"VAPORFORM_DATA_DIR": str(tmp_path), "VAPORFORM_JWT_SECRET": "s" * 40}
    assert load_config(env).blob_keys is None
    single = load_config({**env, "VAPORFORM_BLOB_KEY": b64(one).decode()}).blob_keys
    assert single == BlobKeyring({"default": one}, writer="default")
    both = parse_keyring(
        base64.urlsafe_b64encode(one).decode(), f"old:{b64(two).decode()}, new:{b64(one).decode()}"
    )
    assert both == BlobKeyring({"default": one, "old": two, "new": one}, writer="new")
    assert b64(one).decode() not in repr(both)
    for bad, says in (
        ({"VAPORFORM_BLOB_KEY": b64(b"short").decode()}, "32 bytes"),
        ({"VAPORFORM_BLOB_KEY": "not base64!"}, "base64"),
        ({"VAPORFORM_BLOB_KEYS": b64(one).decode()}, "entry 1"),
        ({"VAPORFORM_BLOB_KEYS": f"a b:{b64(one).decode()}"}, "entry 1"),
        ({"VAPORFORM_BLOB_KEYS": f"k:{b64(one).decode()},k:{b64(two).decode()}"}, "two"),
    ):
        with pytest.raises(ConfigError, match=says) as caught:
            load_config({**env, **bad})
        assert b64(one).decode() not in str(caught.value)  # never echo a key
