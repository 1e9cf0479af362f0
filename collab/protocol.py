"""The collaboration WebSocket's wire format: envelopes, message types and their validation.

Every frame is a JSON object ``{"id", "type", "payload"}``. Incoming frames are checked here
and turned into small dataclasses; anything else raises ``CollabError`` with a stable code, which
the session sends back as an ``error`` (the connection stays open). Outgoing envelopes get
``timestamp``, ``user_id`` and ``session_id`` (whose action the message reports) and, when
they answer a client message, ``ref`` (that message's ``id``).
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from collab import ot
from collab.errors import CollabError
from files.paths import InvalidPath, normalize_path

MAX_ID_CHARS = 128
MAX_CLIENT_ID_CHARS = 128


class ClientType(StrEnum):
    JOIN = "join"
    OP = "op"
    CURSOR = "cursor"
    CHAT = "chat"
    LEAVE = "leave"
    PING = "ping"


class ServerType(StrEnum):
    JOINED = "joined"
    ACK = "ack"
    OP = "op"
    CURSOR = "cursor"
    PRESENCE = "presence"
    CHAT = "chat"
    LEFT = "left"
    PONG = "pong"
    ERROR = "error"
    JOB = "job"
    ACCESS = "access"


@dataclass(frozen=True, slots=True)
class Envelope:
    id: str | None
    type: ClientType
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Join:
    path: str


@dataclass(frozen=True, slots=True)
class Leave:
    path: str


@dataclass(frozen=True, slots=True)
class SubmitOp:
    path: str
    revision: int
    op: ot.Op
    seq: int
    client_id: str | None


@dataclass(frozen=True, slots=True)
class Cursor:
    path: str
    revision: int
    position: int
    selection_end: int | None


@dataclass(frozen=True, slots=True)
class Chat:
    text: str


def invalid(message: str, **details: Any) -> CollabError:
    return CollabError("invalid_message", message, details)


def parse_envelope(raw: str | bytes, max_bytes: int) -> Envelope:
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise CollabError(
            "too_large", f"messages are limited to {max_bytes} bytes", {"limit": max_bytes}
        )
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # What orjson refuses but the json module reads (lone surrogates in escapes, NaN,
        # integers beyond 64 bits) keeps its old meaning; the checks below judge it.
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CollabError("invalid_json", f"the message is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise invalid("a message is a JSON object {id, type, payload}")
    ref = data.get("id")
    if ref is not None and not (isinstance(ref, str | int) and not isinstance(ref, bool)):
        raise invalid("id must be a string or an integer")
    ref_text = None if ref is None else str(ref)[:MAX_ID_CHARS]
    kind = data.get("type")
    try:
        message_type = ClientType(kind if isinstance(kind, str) else "")
    except ValueError:
        raise CollabError(
            "unknown_type",
            f"unknown message type {kind!r}",
            {"ref": ref_text, "types": [t.value for t in ClientType]},
        ) from None
    payload = data.get("payload", {})
    if not isinstance(payload, dict):
        raise invalid("payload must be an object", ref=ref_text)
    return Envelope(ref_text, message_type, payload)


def _optional_int(payload: dict[str, Any], name: str) -> int | None:
    return None if payload.get(name) is None else _int(payload, name)


def _int(payload: dict[str, Any], name: str) -> int:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid(f"{name} must be a non-negative integer", field=name)
    return value


# Every op and cursor names its file: the same few paths, checked again and again (6% of the
# API's time at 250 files x 4 writers, bench/collab_results.md). A path that passes stays
# passed; one that fails is not kept (the cache holds results only) and is refused each time.
_normalized = functools.lru_cache(maxsize=4096)(normalize_path)


def _path(payload: dict[str, Any]) -> str:
    raw = payload.get("path")
    try:
        return _normalized(raw) if isinstance(raw, str) else normalize_path(raw)
    except InvalidPath as exc:
        raise CollabError(
            "invalid_path", f"invalid path: {exc.reason}", {"field": "path", **exc.limits}
        ) from None


def join(payload: dict[str, Any]) -> Join:
    return Join(_path(payload))


def leave(payload: dict[str, Any]) -> Leave:
    return Leave(_path(payload))


def submit_op(payload: dict[str, Any], max_units: int) -> SubmitOp:
    path = _path(payload)
    revision = _int(payload, "revision")
    seq = _int(payload, "seq")
    op = payload.get("op")
    try:
        ot.check(op)
    except ot.OTError as exc:
        raise CollabError(exc.code, str(exc), {"field": "op", "path": path}) from None
    assert isinstance(op, list)
    changed = sum(
        abs(c) if isinstance(c, int) and c < 0 else ot.utf16_len(c)
        for c in op
        if not (isinstance(c, int) and c > 0)
    )
    if changed > max_units:
        raise CollabError(
            "too_large", f"an op may insert and delete at most {max_units} units", {"path": path}
        )
    client_id = payload.get("client_id")
    if client_id is not None and (
        not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ID_CHARS
    ):
        raise invalid(f"client_id must be a string of 1-{MAX_CLIENT_ID_CHARS} characters")
    return SubmitOp(path, revision, op, seq, client_id)


def cursor(payload: dict[str, Any]) -> Cursor:
    path = _path(payload)
    revision = _int(payload, "revision")
    position = _int(payload, "position")
    selection_end = _optional_int(payload, "selection_end")
    return Cursor(path, revision, position, selection_end)


def chat(payload: dict[str, Any], max_chars: int) -> Chat:
    text = payload.get("text")
    if not isinstance(text, str) or not text.strip():
        raise invalid("text must be a non-empty string", field="text")
    if len(text) > max_chars:
        raise CollabError("too_large", f"chat messages are limited to {max_chars} characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid("text must be valid Unicode", field="text") from None
    return Chat(text)


# Envelope ids: 32 hex digits, unique without a random draw per message (uuid4 was 2% of the
# API's time at 250 files x 4 writers): a random half per process, a counted half.
_ID_PREFIX = os.urandom(8).hex()
_ids = itertools.count(1)


def _new_prefix() -> None:
    global _ID_PREFIX
    _ID_PREFIX = os.urandom(8).hex()


# Worker processes forked after this module was imported draw their own half.
os.register_at_fork(after_in_child=_new_prefix)


def envelope(
    kind: ServerType,
    payload: dict[str, Any],
    *,
    user_id: str | None,
    session_id: str | None,
    ref: str | None = None,
) -> str:
    message: dict[str, Any] = {
        "id": f"{_ID_PREFIX}{next(_ids):016x}",
        "type": kind.value,
        "payload": payload,
        "timestamp": time.time(),
        "user_id": user_id,
        "session_id": session_id,
    }
    if ref is not None:
        message["ref"] = ref
    try:
        return orjson.dumps(message).decode()
    except TypeError:  # a lone surrogate (never in what the checks let through) or a big int
        return json.dumps(message, ensure_ascii=False, separators=(",", ":"))
