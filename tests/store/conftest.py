"""Fixtures of the store tests: a real S3 server (SeaweedFS) for the session, a fresh bucket
per run and a fresh prefix per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from store.blob_keys import BlobKeyring
from store.s3_blobs import S3BlobStore
from tests.seaweed import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, make_bucket, seaweed_s3


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder: Path = tmp_path_factory.mktemp("seaweedfs")
    with seaweed_s3(folder) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def s3_bucket(s3_endpoint: str, run_id: str) -> str:
    bucket = f"vf-test-{run_id}"
    make_bucket(s3_endpoint, bucket)
    return bucket


@pytest.fixture
def s3_store_factory(s3_endpoint: str, s3_bucket: str) -> S3StoreFactory:
    return S3StoreFactory(s3_endpoint, s3_bucket)


class S3StoreFactory:
    """S3 blob stores of this run's bucket; each test gets a prefix of its own."""

    def __init__(self, endpoint: str, bucket: str) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        self.prefix = f"t-{uuid.uuid4().hex[:12]}"

    def __call__(
        self, keyring: BlobKeyring | None = None, *, prefix: str | None = None
    ) -> S3BlobStore:
        return S3BlobStore(
            self.bucket,
            endpoint=self.endpoint,
            region=REGION,
            access_key_id=ACCESS_KEY_ID,
            secret_access_key=SECRET_ACCESS_KEY,
            prefix=prefix or self.prefix,
            keyring=keyring,
        )
