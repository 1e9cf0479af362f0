"""Grants: what the API allows an agent to do once, for at most 30 seconds.

A grant is a JWT (HS256) with the audience `agent`, signed with a key only the API and the
agents hold: `VAPORFORM_AGENT_SECRET`, or else a key derived from the JWT secret with HMAC
(so one machine needs no second secret, and a grant is never an access token nor an access
token a grant: another key and another audience). Claims:

    sub      the user it was minted for (logs only; "api" for a workspace sync)
    project  the project id
    container  the container id the terminal or preview is in (a sync: the one running)
    purpose  "terminal" | "preview" | "workspace" (bring committed paths to the workspace)
    port     preview only: the port on the Docker host's 127.0.0.1 to connect to
    jti      single use: the agent counts it in the ephemeral store and refuses a second use
    iat/nbf/exp  exp - iat <= 30 s

Preview sessions (web/preview_origin.py) are signed the same way with a key of their own.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass

import jwt

from vaporform.config import Config

AUDIENCE = "agent"
PREVIEW_AUDIENCE = "preview"
MAX_TTL_S = 30
PURPOSES = ("terminal", "preview", "workspace")
HEADER = "X-Vaporform-Grant"
# `agent-grant:<jti>` in the ephemeral store: a grant that was used.
USED_PREFIX = "agent-grant:"
_ALGORITHM = "HS256"
_LEEWAY_S = 2


class GrantError(Exception):
    """Not a grant this agent accepts (bad signature, expired, wrong purpose, used)."""


@dataclass(frozen=True, slots=True)
class Grant:
    user_id: str
    project_id: str
    container_id: str
    purpose: str
    port: int | None
    jti: str
    expires_at: int


def _derived(config: Config, label: bytes) -> bytes:
    base = config.agent.secret or config.jwt.secret
    return hmac.new(base.encode(), b"vaporform " + label, hashlib.sha256).digest()


def agent_key(config: Config) -> bytes:
    return _derived(config, b"agent grants v1")


def preview_key(config: Config) -> bytes:
    """Signs preview sessions and names previews; never leaves the API."""
    return hmac.new(
        config.jwt.secret.encode(), b"vaporform preview sessions v1", hashlib.sha256
    ).digest()


def mint(
    key: bytes,
    *,
    issuer: str,
    user_id: str,
    project_id: str,
    container_id: str,
    purpose: str,
    port: int | None = None,
    ttl_s: int = MAX_TTL_S,
) -> str:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}")
    if purpose == "preview" and port is None:
        raise ValueError("a preview grant names a port")
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": user_id,
        "project": project_id,
        "container": container_id,
        "purpose": purpose,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "nbf": now,
        "exp": now + min(ttl_s, MAX_TTL_S),
        "iss": issuer,
        "aud": AUDIENCE,
    }
    if port is not None:
        claims["port"] = port
    return jwt.encode(claims, key, algorithm=_ALGORITHM)


def verify(key: bytes, token: str, *, issuer: str, purpose: str) -> Grant:
    """The grant's claims when its signature, audience, issuer, time and purpose hold. Its
    single use is the caller's to enforce (`USED_PREFIX + jti`)."""
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=[_ALGORITHM],
            audience=AUDIENCE,
            issuer=issuer,
            options={"require": ["exp", "iat", "nbf", "jti", "aud", "iss", "sub"]},
            leeway=_LEEWAY_S,
        )
    except jwt.PyJWTError as exc:
        raise GrantError(str(exc)) from exc
    try:
        exp, iat = int(payload["exp"]), int(payload["iat"])
        if exp - iat > MAX_TTL_S:
            raise GrantError(f"a grant lives at most {MAX_TTL_S} s")
        if payload.get("purpose") != purpose:
            raise GrantError(f"not a {purpose} grant")
        port = payload.get("port")
        if purpose == "preview" and not (isinstance(port, int) and 1 <= port <= 65535):
            raise GrantError("a preview grant names a port")
        return Grant(
            user_id=str(payload["sub"]),
            project_id=str(payload["project"]),
            container_id=str(payload["container"]),
            purpose=purpose,
            port=port if isinstance(port, int) else None,
            jti=str(payload["jti"]),
            expires_at=exp,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise GrantError(str(exc)) from exc
