"""MFA (TOTP): status, enrol, confirm, the code step of a login, recovery codes, disable.

Every route that checks a code counts against the same limits as login (per client address and
per user), so a guess costs the same wherever it is made. Details: docs/auth.md.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, Field
from quart import Blueprint
from quart_schema import document_response, security_scheme, validate_request

from store import mfa as mfa_store
from store import users
from store.mfa import MFA
from web import audit, second_factor
from web.auth import principal, require_auth
from web.blueprints.auth import Strict, TokensOut, _session_for
from web.client_ip import client_ip
from web.errors import APIError
from web.openapi import document_errors
from web.ratelimit import enforce
from web.services import services

blueprint = Blueprint("mfa", __name__, url_prefix="/api/v1/auth/mfa")


class CodeIn(Strict):
    code: str = Field(min_length=1, max_length=64, description="a TOTP code or a recovery code")


class ConfirmIn(Strict):
    code: str = Field(min_length=1, max_length=64, description="a TOTP code from the new secret")


class MFALoginIn(Strict):
    challenge: str = Field(min_length=1, max_length=256)
    code: str = Field(min_length=1, max_length=64, description="a TOTP code or a recovery code")


class MFAStatusOut(BaseModel):
    enabled: bool
    pending: bool = Field(description="an enrolment was begun and awaits its confirming code")
    recovery_codes_remaining: int
    required: bool = Field(
        description="MFA is required of this user (by the deployment, or by an admin)"
    )


class EnrolOut(BaseModel):
    secret: str = Field(description="base32, for typing into an authenticator by hand")
    otpauth_uri: str
    qr_svg: str = Field(description="the otpauth URI as a QR code, a standalone SVG document")


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str] = Field(description="shown this once; each works once")


def invalid_challenge() -> APIError:
    return APIError(
        401, "invalid_mfa_challenge", "the challenge is unknown, expired or used: log in again"
    )


async def _limit_address() -> None:
    limits = services().config.rate_limits
    await enforce("mfa-ip", client_ip(), limits.login_per_ip, limits.login_window_s)


async def _limit_user(user_id: uuid.UUID) -> None:
    limits = services().config.rate_limits
    await enforce("mfa-user", str(user_id), limits.login_per_email, limits.login_window_s)


async def _status(user_id: uuid.UUID) -> dict[str, Any]:
    found = services()
    async with found.pool.acquire() as conn:
        current = await mfa_store.by_user(conn, user_id)
        codes = await mfa_store.recovery_state(conn, user_id)
    return {
        "enabled": current is not None and current.enabled,
        "pending": current is not None and not current.enabled,
        "recovery_codes_remaining": codes.remaining if current is not None else 0,
        "required": await second_factor.mfa_required_for(user_id),
    }


async def _enabled_mfa(user_id: uuid.UUID) -> MFA:
    async with services().pool.acquire() as conn:
        current = await mfa_store.by_user(conn, user_id)
    if current is None or not current.enabled:
        raise APIError(409, "mfa_not_enabled", "MFA is not turned on for this account")
    return current


async def _new_recovery_codes(user_id: uuid.UUID) -> list[str]:
    codes = second_factor.new_recovery_codes()
    async with services().pool.acquire() as conn:
        await mfa_store.replace_recovery_codes(conn, user_id, codes)
    return codes


@blueprint.get("")
@require_auth
@document_response(MFAStatusOut)
async def status() -> dict[str, Any]:
    """Whether MFA is on for the caller, and how many recovery codes are left."""
    caller = await principal()
    return await _status(caller.user_id)


@blueprint.post("/enrol")
@require_auth
@document_response(EnrolOut)
@document_errors((409, "`mfa_already_enabled`"), (429, "`rate_limited`"))
async def enrol() -> dict[str, Any]:
    """Begin enrolment: a new secret, as an otpauth:// URI and its QR code. Nothing changes
    for logins until POST /confirm; enrolling again replaces an unconfirmed secret."""
    caller = await principal()
    await _limit_address()
    found = services()
    secret = second_factor.new_secret()
    async with found.pool.acquire() as conn:
        user = await users.by_id(conn, caller.user_id)
        started = await mfa_store.begin_enrolment(conn, caller.user_id, secret)
    if user is None:
        raise APIError(401, "unauthorized", "the account no longer exists")
    if started is None:
        raise APIError(409, "mfa_already_enabled", "MFA is already on; disable it first")
    uri = second_factor.provisioning_uri(secret, user.email, found.config.mfa.issuer)
    return {"secret": secret, "otpauth_uri": uri, "qr_svg": second_factor.qr_svg(uri)}


@blueprint.post("/confirm")
@require_auth
@validate_request(ConfirmIn)
@document_response(RecoveryCodesOut)
@document_errors(
    (400, "`invalid_mfa_code`"),
    (409, "`mfa_already_enabled`; `mfa_not_enrolling`"),
    (429, "`rate_limited`"),
)
async def confirm(data: ConfirmIn) -> dict[str, Any]:
    """Turn MFA on with a code of the enrolled secret; answers the 10 recovery codes, once."""
    caller = await principal()
    await _limit_address()
    await _limit_user(caller.user_id)
    async with services().pool.acquire() as conn:
        current = await mfa_store.by_user(conn, caller.user_id)
        if current is not None and current.enabled:
            raise APIError(409, "mfa_already_enabled", "MFA is already on")
        if current is None:
            raise APIError(409, "mfa_not_enrolling", "begin with POST /api/v1/auth/mfa/enrol")
        if not await second_factor.accept_totp(conn, current, data.code, confirming=True):
            raise second_factor.invalid_code(400)
    codes = await _new_recovery_codes(caller.user_id)
    await audit.record_after(
        "auth.mfa_enabled", actor_id=caller.user_id, target=str(caller.user_id)
    )
    return {"recovery_codes": codes}


@blueprint.post("/login")
@security_scheme([])
@validate_request(MFALoginIn)
@document_response(TokensOut)
@document_errors(
    (401, "`invalid_mfa_challenge`: log in again; `invalid_mfa_code`"), (429, "`rate_limited`")
)
async def login(data: MFALoginIn) -> dict[str, Any]:
    """The second step of a login: the challenge from the 401 `mfa_required` of
    POST /api/v1/auth/login, and a TOTP or recovery code. A challenge grants one login and
    allows a few wrong codes."""
    await _limit_address()
    challenge = await second_factor.take_challenge(data.challenge)
    if challenge is None:
        raise invalid_challenge()
    try:
        await _limit_user(challenge.user_id)
    except APIError:
        # Waiting out the limit should not cost the password step as well.
        await second_factor.give_back(data.challenge, challenge, failed=False)
        raise
    async with services().pool.acquire() as conn:
        current = await mfa_store.by_user(conn, challenge.user_id)
        user = await users.by_id(conn, challenge.user_id)
        if current is None or not current.enabled or user is None:
            raise invalid_challenge()
        accepted = await second_factor.accept_code(conn, current, data.code)
    if not accepted:
        await second_factor.give_back(data.challenge, challenge, failed=True)
        await audit.record_after(
            "auth.mfa_login", actor_id=user.id, target=str(user.id), outcome="failure"
        )
        raise second_factor.invalid_code()
    session = await _session_for(user)
    await audit.record_after("auth.mfa_login", actor_id=user.id, target=str(user.id))
    return session


async def _check_own_code(user_id: uuid.UUID, code: str) -> None:
    """A signed-in user's current TOTP or recovery code, under the MFA rate limits; 400
    `invalid_mfa_code` otherwise (the token is valid: not a 401)."""
    await _limit_address()
    await _limit_user(user_id)
    current = await _enabled_mfa(user_id)
    async with services().pool.acquire() as conn:
        if not await second_factor.accept_code(conn, current, code):
            raise second_factor.invalid_code(400)


@blueprint.post("/recovery-codes")
@require_auth
@validate_request(CodeIn)
@document_response(RecoveryCodesOut)
@document_errors((400, "`invalid_mfa_code`"), (409, "`mfa_not_enabled`"), (429, "`rate_limited`"))
async def regenerate(data: CodeIn) -> dict[str, Any]:
    """Replace every recovery code with 10 new ones (shown once), given a current code."""
    caller = await principal()
    await _check_own_code(caller.user_id, data.code)
    codes = await _new_recovery_codes(caller.user_id)
    await audit.record_after(
        "auth.mfa_recovery_codes", actor_id=caller.user_id, target=str(caller.user_id)
    )
    return {"recovery_codes": codes}


@blueprint.post("/disable")
@require_auth
@validate_request(CodeIn)
@document_response(MFAStatusOut)
@document_errors((400, "`invalid_mfa_code`"), (409, "`mfa_not_enabled`"), (429, "`rate_limited`"))
async def disable(data: CodeIn) -> dict[str, Any]:
    """Turn MFA off with a TOTP or recovery code: the secret and the recovery codes go."""
    caller = await principal()
    await _check_own_code(caller.user_id, data.code)
    async with services().pool.acquire() as conn, conn.transaction():
        await mfa_store.remove(conn, caller.user_id)
        await audit.record(
            conn, "auth.mfa_disabled", actor_id=caller.user_id, target=str(caller.user_id)
        )
    return await _status(caller.user_id)
