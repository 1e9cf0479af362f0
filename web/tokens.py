"""JWT access tokens, WebSocket tickets and opaque refresh tokens.

The algorithm is pinned on decode (no `alg: none`, no key confusion), and issuer, audience,
expiry and the key id are all checked: a token that fails any check is simply not a token.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import jwt

from vaporform.settings.auth import JWTSettings


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    role: str
    jti: str
    expires_at: int

    def remaining_s(self) -> int:
        return max(0, self.expires_at - int(time.time()))


class TokenError(Exception):
    pass


def issue_access(settings: JWTSettings, user_id: uuid.UUID, role: str) -> tuple[str, AccessClaims]:
    now = int(time.time())
    claims = AccessClaims(
        user_id=user_id, role=role, jti=uuid.uuid4().hex, expires_at=now + settings.access_ttl_s
    )
    token = jwt.encode(
        {
            "sub": str(user_id),
            "role": role,
            "jti": claims.jti,
            "iat": now,
            "nbf": now,
            "exp": claims.expires_at,
            "iss": settings.issuer,
            "aud": settings.audience,
            "typ": "access",
        },
        settings.secret,
        algorithm=settings.algorithm,
        headers={"kid": settings.kid},
    )
    return token, claims


# Verified tokens by (settings, token): a client sends the same token for up to 15 minutes,
# and decoding + HMAC costs ~0.2 ms of the ~1 ms a request takes. Expiry is re-checked on
# every hit; revocation is checked separately (web/auth.py), never cached.
_VERIFIED: OrderedDict[tuple[JWTSettings, str], AccessClaims] = OrderedDict()
_VERIFIED_MAX = 4096


def verify_access(settings: JWTSettings, token: str) -> AccessClaims:
    key = (settings, token)
    cached = _VERIFIED.get(key)
    if cached is not None:
        if cached.expires_at > time.time():
            _VERIFIED.move_to_end(key)
            return cached
        del _VERIFIED[key]
        raise TokenError("the token has expired")
    claims = _verify_access(settings, token)
    _VERIFIED[key] = claims
    if len(_VERIFIED) > _VERIFIED_MAX:
        _VERIFIED.popitem(last=False)
    return claims


def _verify_access(settings: JWTSettings, token: str) -> AccessClaims:
    try:
        header = jwt.get_unverified_header(token)
        if header.get("kid") != settings.kid:
            raise TokenError("unknown key id")
        payload = jwt.decode(
            token,
            settings.secret,
            algorithms=[settings.algorithm],
            audience=settings.audience,
            issuer=settings.issuer,
            options={"require": ["exp", "iat", "nbf", "sub", "jti", "iss", "aud"]},
            leeway=5,
        )
        if payload.get("typ") != "access":
            raise TokenError("not an access token")
        return AccessClaims(
            user_id=uuid.UUID(payload["sub"]),
            role=str(payload.get("role", "user")),
            jti=str(payload["jti"]),
            expires_at=int(payload["exp"]),
        )
    except (jwt.PyJWTError, ValueError, KeyError, TypeError) as exc:
        raise TokenError(str(exc)) from exc


def new_opaque_token() -> str:
    """A refresh token or WebSocket ticket: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)
