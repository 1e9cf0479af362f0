"""Encryption at rest of blob contents: AES-256-GCM under a keyring of named keys.

An encrypted blob file is a small header and the ciphertext:

    b"VFBE" | version (1 byte, 1) | key id length (1 byte) | key id (ASCII) | nonce (12 bytes)
    | ciphertext with the 16-byte GCM tag

The header and the blob's address (the sha256 of the plaintext, which content addressing keeps
using) are the associated data, so a blob cannot be passed off under another address or key id
without failing authentication. The newest key of the ring writes; every key of the ring reads,
so keys rotate by adding one. A file without the header is a plaintext blob written before a
key was configured and reads as it is.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"VFBE"
VERSION = 1
NONCE_BYTES = 12
KID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# The key id of a lone VAPORFORM_BLOB_KEY (name it in VAPORFORM_BLOB_KEYS to rotate away from it).
DEFAULT_KID = "default"


class BlobKeyError(Exception):
    """A blob cannot be read with the configured keys (missing key, wrong key, damaged)."""

    def __init__(self, message: str, sha256: str, kid: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.sha256 = sha256
        self.kid = kid


@dataclass(frozen=True, slots=True)
class BlobKeyring:
    """Named 256-bit keys; `writer` names the one new blobs are encrypted with."""

    keys: dict[str, bytes] = field(repr=False)
    writer: str

    def __post_init__(self) -> None:
        if self.writer not in self.keys:
            raise ValueError(f"the writing key {self.writer!r} is not in the ring")
        for kid, key in self.keys.items():
            if not KID.match(kid):
                raise ValueError(f"key id {kid!r}: use 1-64 letters, digits, '_', '.' or '-'")
            if len(key) != 32:
                raise ValueError(f"key {kid!r} must be 32 bytes, got {len(key)}")

    def seal(self, sha256: str, plaintext: bytes) -> bytes:
        kid = self.writer.encode()
        nonce = os.urandom(NONCE_BYTES)
        header = MAGIC + bytes([VERSION, len(kid)]) + kid + nonce
        cipher = AESGCM(self.keys[self.writer])
        return header + cipher.encrypt(nonce, plaintext, header + sha256.encode())


def key_id_of(data: bytes) -> str | None:
    """The key id in an encrypted blob's header; None for anything else."""
    parsed = _parse(data)
    return None if parsed is None else parsed[0]


def _parse(data: bytes) -> tuple[str, bytes, bytes] | None:
    """(key id, header, ciphertext) of an encrypted blob; None when `data` has no header."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 2:
        return None
    version, size = data[len(MAGIC)], data[len(MAGIC) + 1]
    end = len(MAGIC) + 2 + size + NONCE_BYTES
    if version != VERSION or size == 0 or len(data) < end + 16:
        return None
    try:
        kid = data[len(MAGIC) + 2 : len(MAGIC) + 2 + size].decode("ascii")
    except UnicodeDecodeError:
        return None
    return kid, data[:end], data[end:]


def open_blob(keyring: BlobKeyring | None, sha256: str, data: bytes) -> bytes:
    """The plaintext of a blob file's bytes `data` stored under `sha256`."""
    parsed = _parse(data)
    if parsed is None:
        return data  # written before encryption was configured
    kid, header, ciphertext = parsed
    key = None if keyring is None else keyring.keys.get(kid)
    if key is None:
        if hashlib.sha256(data).hexdigest() == sha256:
            return data  # a plaintext file that merely starts like a header
        where = "no blob key is configured" if keyring is None else "the keyring lacks it"
        raise BlobKeyError(
            f"blob {sha256} is encrypted with key {kid!r} and {where} "
            "(VAPORFORM_BLOB_KEY / VAPORFORM_BLOB_KEYS)",
            sha256,
            kid,
        )
    nonce = header[-NONCE_BYTES:]
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, header + sha256.encode())
    except InvalidTag:
        if hashlib.sha256(data).hexdigest() == sha256:
            return data
        raise BlobKeyError(
            f"blob {sha256} does not decrypt with key {kid!r}: the key is wrong or the blob "
            "is damaged",
            sha256,
            kid,
        ) from None


def decode_key(raw: str, name: str) -> bytes:
    """A key given as base64 (standard or URL-safe alphabet) of exactly 32 bytes."""
    text = raw.strip()
    try:
        key = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{name} must be base64 of 32 bytes") from None
    if len(key) != 32:
        raise ValueError(f"{name} must be base64 of 32 bytes, got {len(key)} bytes")
    return key


def parse_keyring(single: str | None, ring: str | None) -> BlobKeyring | None:
    """The keyring of `VAPORFORM_BLOB_KEY` (key id "default") and `VAPORFORM_BLOB_KEYS`
    (`kid:key,...`, the last one writes); None when neither is set. ValueError says what is
    wrong."""
    keys: dict[str, bytes] = {}
    writer: str | None = None
    if single and single.strip():
        keys[DEFAULT_KID] = decode_key(single, "VAPORFORM_BLOB_KEY")
        writer = DEFAULT_KID
    entries = [p.strip() for p in (ring or "").split(",") if p.strip()]
    for number, part in enumerate(entries, start=1):
        kid, sep, raw = part.partition(":")
        kid = kid.strip()
        if not sep or not KID.match(kid):
            # Never echo the entry: it may be a key.
            raise ValueError(
                f"VAPORFORM_BLOB_KEYS entry {number}: expected kid:base64key, the key id made "
                "of letters, digits, '_', '.' or '-'"
            )
        key = decode_key(raw, f"VAPORFORM_BLOB_KEYS key {kid!r}")
        if kid in keys and keys[kid] != key:
            raise ValueError(f"VAPORFORM_BLOB_KEYS: key id {kid!r} is given two different keys")
        keys[kid] = key
        writer = kid
    if writer is None:
        return None
    return BlobKeyring(keys, writer)
