"""The file system and the blob store the configuration names, built for the API, the worker,
the agent and the command line (store/ takes plain values and knows nothing of the
configuration)."""

from __future__ import annotations

import asyncpg

from files.mirror import WorkspaceSync
from files.model import Limits
from files.service import FileSystem, Notifier
from store.blobs import BlobStore, LocalBlobStore
from vaporform.config import Config


def build_blob_store(config: Config) -> BlobStore:
    """The blob store `VAPORFORM_BLOB_STORE` names: the data dir (local) or an S3 bucket."""
    settings = config.blob_store
    if settings.kind == "s3":
        from store.s3_blobs import S3BlobStore

        return S3BlobStore(
            settings.s3_bucket,
            endpoint=settings.s3_endpoint,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            prefix=settings.s3_prefix,
            keyring=config.blob_keys,
        )
    return LocalBlobStore(config.data_dir / "blobs", keyring=config.blob_keys)


def build_filesystem(
    config: Config,
    pool: asyncpg.Pool,
    *,
    notifier: Notifier | None = None,
    workspace_sync: WorkspaceSync | None = None,
) -> FileSystem:
    """With `workspace_sync` (the API: agent/workspace_sync.py) committed changes go there and
    no workspace is kept here; without, the workspaces are under the data dir (a Docker host)."""
    limits = Limits(max_file_bytes=config.max_file_bytes, max_files=config.max_files_per_project)
    return FileSystem(
        pool,
        build_blob_store(config),
        config.data_dir,
        limits,
        notifier=notifier,
        workspace_sync=workspace_sync,
    )
