"""The second factor: TOTP and recovery codes, login challenges and the require-MFA policy.

A TOTP code is accepted for the current 30 s time step and one step either side (clock skew),
and only if its step is newer than the last one accepted for the user (store/mfa.py), so a code
works once. A login challenge is the proof that the password step passed: a random token in the
ephemeral store, good for a few minutes and one successful code.
"""

from __future__ import annotations

import hmac
import io
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Literal

import pyotp
import segno
from pydantic import BaseModel
from quart import g, has_websocket_context, request, websocket

from store import mfa as mfa_store
from store.db import Conn
from store.mfa import MFA
from web.errors import APIError
from web.revocation import revocations
from web.services import services

TOTP_DIGITS = 6
TOTP_STEP_S = 30
TOTP_WINDOW = 1  # steps accepted either side of the current one
RECOVERY_CODES = 10
# No 0/o, 1/l/i: codes are read off paper. 16 characters of 31: ~79 bits.
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
_RECOVERY_LENGTH = 16
CHALLENGE_PREFIX = "mfa-challenge:"
MAX_CHALLENGE_ATTEMPTS = 5
# Endpoints a user who must enrol may still call (VAPORFORM_REQUIRE_MFA).
ENROLMENT_ENDPOINTS = frozenset(
    {"auth.me", "auth.logout", "mfa.status", "mfa.enrol", "mfa.confirm"}
)
_POLICY_CHECKED = "_vaporform_mfa_policy_checked"


def invalid_code(status: int = 401) -> APIError:
    # Wrong, expired, reused: one answer, so guessing learns nothing about which it was.
    return APIError(status, "invalid_mfa_code", "the code is wrong, expired or already used")


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP_S).provisioning_uri(
        name=account, issuer_name=issuer
    )


def qr_svg(uri: str) -> str:
    """A standalone SVG document of the QR code (usable inline or as an image)."""
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="svg", xmldecl=False, scale=4, border=2)
    return buffer.getvalue().decode()


def new_recovery_codes() -> list[str]:
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
        codes.append("-".join(raw[i : i + 4] for i in range(0, _RECOVERY_LENGTH, 4)))
    return codes


def matching_step(secret: str, code: str, now: float) -> int | None:
    """The time step within the window whose code is `code`, or None."""
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP_S)
    current = int(now) // TOTP_STEP_S
    found = None
    for step in range(current - TOTP_WINDOW, current + TOTP_WINDOW + 1):
        # Every step is compared, in constant time, so timing tells nothing either.
        if hmac.compare_digest(totp.generate_otp(step), code) and found is None:
            found = step
    return found


def _normal(code: str) -> str:
    return "".join(code.split())


def is_totp_code(code: str) -> bool:
    normal = _normal(code)
    return len(normal) == TOTP_DIGITS and normal.isascii() and normal.isdigit()


async def accept_totp(conn: Conn, mfa: MFA, code: str, *, confirming: bool = False) -> bool:
    """True when `code` is a TOTP code of the window not used before; it is then used up."""
    if not is_totp_code(code):
        return False
    step = matching_step(mfa.secret, _normal(code), time.time())
    if step is None:
        return False
    return await mfa_store.accept_step(conn, mfa.user_id, step, confirming=confirming) is not None


async def accept_code(conn: Conn, mfa: MFA, code: str) -> bool:
    """A TOTP code or an unused recovery code of an enrolled user, used up when accepted."""
    if not mfa.enabled:
        return False
    if is_totp_code(code):
        return await accept_totp(conn, mfa, code)
    return await mfa_store.spend_recovery_code(conn, mfa.user_id, code)


@dataclass(frozen=True, slots=True)
class Challenge:
    user_id: uuid.UUID
    expires_at: float
    attempts: int = 0

    def dump(self) -> str:
        return json.dumps(
            {"user_id": str(self.user_id), "expires_at": self.expires_at, "attempts": self.attempts}
        )

    @classmethod
    def load(cls, raw: str) -> Challenge:
        data = json.loads(raw)
        return cls(uuid.UUID(data["user_id"]), float(data["expires_at"]), int(data["attempts"]))


async def open_challenge(user_id: uuid.UUID, ttl_s: int) -> str:
    token = secrets.token_urlsafe(32)
    challenge = Challenge(user_id, time.time() + ttl_s)
    await services().ephemeral.put(CHALLENGE_PREFIX + token, challenge.dump(), ttl_s)
    return token


async def take_challenge(token: str) -> Challenge | None:
    """The challenge, removed from the store: two requests cannot hold it at once."""
    raw = await services().ephemeral.take(CHALLENGE_PREFIX + token)
    if raw is None:
        return None
    challenge = Challenge.load(raw)
    return challenge if challenge.expires_at > time.time() else None


async def give_back(token: str, challenge: Challenge, *, failed: bool) -> None:
    """Return a challenge that was not redeemed, counting a failed attempt; a challenge with
    too many failures, or no time left, is not returned."""
    attempts = challenge.attempts + (1 if failed else 0)
    remaining = challenge.expires_at - time.time()
    if attempts >= MAX_CHALLENGE_ATTEMPTS or remaining <= 0:
        return
    kept = Challenge(challenge.user_id, challenge.expires_at, attempts)
    await services().ephemeral.put(CHALLENGE_PREFIX + token, kept.dump(), remaining)


class ChallengeDetails(BaseModel):
    challenge: str
    expires_in: int


class MFARequiredError(BaseModel):
    code: Literal["mfa_required"]
    message: str
    details: ChallengeDetails


class MFARequiredOut(BaseModel):
    """The answer to a right password of a user with MFA: 401, and the challenge to redeem at
    POST /api/v1/auth/mfa/login with a code."""

    error: MFARequiredError


async def require_second_step(user_id: uuid.UUID) -> None:
    """Called once the password is right: for a user with MFA, a 401 `mfa_required` carrying
    a new challenge instead of tokens."""
    found = services()
    async with found.pool.acquire() as conn:
        enrolled = await mfa_store.is_enabled(conn, user_id)
    if enrolled:
        ttl = found.config.mfa.challenge_ttl_s
        raise APIError(
            401,
            "mfa_required",
            "the password is right; send a code with the challenge to /api/v1/auth/mfa/login",
            details={"challenge": await open_challenge(user_id, ttl), "expires_in": ttl},
        )


async def mfa_required_for(user_id: uuid.UUID) -> bool:
    """Whether the user must have MFA: VAPORFORM_REQUIRE_MFA, or an admin's flag on the user
    (`users.mfa_required`, read with the account check every request makes anyway)."""
    if services().config.mfa.required:
        return True
    return await revocations().user_requires_mfa(user_id)


async def enforce_mfa_policy(user_id: uuid.UUID) -> None:
    """With VAPORFORM_REQUIRE_MFA, or MFA required of this user by an admin, an authenticated
    caller without MFA reaches only the enrolment endpoints; anything else answers 403
    `mfa_enrolment_required`."""
    found = services()
    if getattr(g, _POLICY_CHECKED, False) or not await mfa_required_for(user_id):
        return
    endpoint = websocket.endpoint if has_websocket_context() else request.endpoint
    if endpoint not in ENROLMENT_ENDPOINTS:
        async with found.pool.acquire() as conn:
            enrolled = await mfa_store.is_enabled(conn, user_id)
        if not enrolled:
            raise APIError(
                403,
                "mfa_enrolment_required",
                "MFA is required of this account: enrol at /api/v1/auth/mfa/enrol first",
                details={"enrol": "/api/v1/auth/mfa/enrol", "confirm": "/api/v1/auth/mfa/confirm"},
            )
    setattr(g, _POLICY_CHECKED, True)
