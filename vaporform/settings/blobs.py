"""Where file contents live (the data dir or an S3 bucket) and the keys that encrypt them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from store.blob_keys import BlobKeyring, parse_keyring
from vaporform.settings.env import ConfigError


@dataclass(frozen=True, slots=True)
class BlobStoreSettings:
    """Where file contents live (store/blobs.py): the data dir, or an S3 bucket that several
    API hosts share."""

    kind: str = "local"  # "local" | "s3"
    s3_endpoint: str | None = None  # None: AWS itself; e.g. http://127.0.0.1:8333 (SeaweedFS)
    s3_bucket: str = ""
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None  # None: the AWS_* environment / instance credentials
    s3_secret_access_key: str | None = None
    s3_prefix: str = "blobs"


def blob_store_settings(env: Mapping[str, str]) -> BlobStoreSettings:
    base = BlobStoreSettings()
    kind = (env.get("VAPORFORM_BLOB_STORE") or base.kind).strip().lower()
    if kind not in ("local", "s3"):
        raise ConfigError(f"VAPORFORM_BLOB_STORE must be local or s3, got {kind!r}")
    bucket = (env.get("VAPORFORM_S3_BUCKET") or "").strip()
    if kind == "s3" and len(bucket) < 3:
        raise ConfigError("VAPORFORM_BLOB_STORE=s3 needs VAPORFORM_S3_BUCKET (3+ characters)")
    endpoint = env.get("VAPORFORM_S3_ENDPOINT") or None
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"VAPORFORM_S3_ENDPOINT must be an http(s) URL, got {endpoint!r}")
    key_id = env.get("VAPORFORM_S3_ACCESS_KEY_ID") or None
    secret = env.get("VAPORFORM_S3_SECRET_ACCESS_KEY") or None
    if (key_id is None) != (secret is None):
        raise ConfigError(
            "set both VAPORFORM_S3_ACCESS_KEY_ID and VAPORFORM_S3_SECRET_ACCESS_KEY, or neither"
        )
    return BlobStoreSettings(
        kind=kind,
        s3_endpoint=endpoint,
        s3_bucket=bucket,
        s3_region=env.get("VAPORFORM_S3_REGION") or base.s3_region,
        s3_access_key_id=key_id,
        s3_secret_access_key=secret,
        s3_prefix=env.get("VAPORFORM_S3_PREFIX", base.s3_prefix).strip("/"),
    )


def blob_keys(env: Mapping[str, str]) -> BlobKeyring | None:
    """Encryption at rest of file contents (store/blob_keys.py); None: blobs are plaintext."""
    try:
        return parse_keyring(env.get("VAPORFORM_BLOB_KEY"), env.get("VAPORFORM_BLOB_KEYS"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
