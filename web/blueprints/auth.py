"""Register, login, refresh, logout, me and WebSocket tickets."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, request
from quart_schema import document_response, security_scheme, validate_request

from store import refresh_tokens, users
from store.refresh_tokens import Outcome
from store.users import User
from web import audit
from web.auth import mint_ws_ticket, principal, require_auth, revoke_access
from web.client_ip import client_ip
from web.errors import APIError
from web.openapi import document_errors, document_no_content, document_optional_request
from web.ratelimit import enforce
from web.second_factor import MFARequiredOut, require_second_step
from web.services import services
from web.tokens import issue_access, new_opaque_token

blueprint = Blueprint("auth", __name__, url_prefix="/api/v1/auth")

EMAIL_PATTERN = r"^[^@\s\x00-\x1f]{1,64}@[^@\s\x00-\x1f]+\.[^@\s\x00-\x1f]+$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=False)


class RegisterIn(Strict):
    email: str = Field(min_length=3, max_length=254, pattern=EMAIL_PATTERN)
    password: str = Field(min_length=8, max_length=256)
    name: str = Field(min_length=1, max_length=100)


class LoginIn(Strict):
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=256)


class RefreshIn(Strict):
    refresh_token: str = Field(min_length=1, max_length=256)


class LogoutIn(Strict):
    refresh_token: str | None = Field(default=None, min_length=1, max_length=256)


class UserOut(BaseModel):
    id: str
    email: str
    name: str
    role: str


class TokensOut(BaseModel):
    user: UserOut
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


class TicketOut(BaseModel):
    ticket: str
    expires_in: int


def _client_address() -> str:
    return client_ip()


def _refuse_disabled(user: User) -> None:
    if user.disabled:
        raise APIError(401, "account_disabled", "this account is disabled")


async def _session_for(user: User, family_id: uuid.UUID | None = None) -> dict[str, Any]:
    """A new access token, plus a refresh token in a new family when none is given."""
    _refuse_disabled(user)
    found = services()
    settings = found.config.jwt
    access, _ = issue_access(settings, user.id, user.role)
    refresh = new_opaque_token()
    async with found.pool.acquire() as conn:
        await refresh_tokens.issue(
            conn,
            user_id=user.id,
            family_id=family_id or uuid.uuid4(),
            token=refresh,
            ttl=timedelta(seconds=settings.refresh_ttl_s),
        )
    return _tokens(user, access, refresh)


def _tokens(user: User, access: str, refresh: str) -> dict[str, Any]:
    return {
        "user": user.public(),
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "Bearer",
        "expires_in": services().config.jwt.access_ttl_s,
    }


@blueprint.post("/register")
@security_scheme([])
@validate_request(RegisterIn)
@document_response(TokensOut, 201)
@document_errors((409, "`email_taken`"), (429, "`rate_limited`, with `Retry-After`"))
async def register(data: RegisterIn) -> tuple[dict[str, Any], int]:
    found = services()
    limits = found.config.rate_limits
    await enforce("register-ip", _client_address(), limits.register_per_ip, 3600)
    password_hash = await found.passwords.hash(data.password)
    async with found.pool.acquire() as conn:
        user = await users.create(
            conn, email=data.email, name=data.name.strip(), password_hash=password_hash
        )
    if user is None:
        raise APIError(409, "email_taken", "an account with this email already exists")
    await audit.record_after("auth.registered", actor_id=user.id, target=str(user.id))
    return await _session_for(user), 201


@blueprint.post("/login")
@security_scheme([])
@validate_request(LoginIn)
@document_response(TokensOut)
@document_response(MFARequiredOut, 401)
@document_errors(
    (401, "`invalid_credentials`; `account_disabled`"),
    (429, "`rate_limited`, with `Retry-After`"),
)
async def login(data: LoginIn) -> dict[str, Any]:
    found = services()
    limits = found.config.rate_limits
    # Limits are counted before the password is checked: guessing costs attempts either way.
    await enforce("login-ip", _client_address(), limits.login_per_ip, limits.login_window_s)
    await enforce("login-email", data.email, limits.login_per_email, limits.login_window_s)
    async with found.pool.acquire() as conn:
        user = await users.by_email(conn, data.email)
    ok, rehash = await found.passwords.verify(user.password_hash if user else None, data.password)
    if user is None or not ok or user.disabled:
        await audit.record_after(
            "auth.login",
            actor_id=user.id if user else None,
            target=str(user.id) if user else None,
            outcome="failure",
            details={
                "email": data.email,
                "reason": "account_disabled" if ok and user else "invalid_credentials",
            },
        )
    if user is None or not ok:
        raise APIError(401, "invalid_credentials", "the email or password is wrong")
    _refuse_disabled(user)
    if rehash:
        new_hash = await found.passwords.hash(data.password)
        async with found.pool.acquire() as conn:
            await users.set_password_hash(conn, user.id, new_hash)
    # A user with MFA gets a challenge here and tokens from POST /api/v1/auth/mfa/login.
    try:
        await require_second_step(user.id)
    except APIError:
        await audit.record_after("auth.mfa_challenge", actor_id=user.id, target=str(user.id))
        raise
    session = await _session_for(user)
    await audit.record_after("auth.login", actor_id=user.id, target=str(user.id))
    return session


@blueprint.post("/refresh")
@security_scheme([])
@validate_request(RefreshIn)
@document_response(TokensOut)
@document_errors(
    (
        401,
        "`refresh_token_reused` (every session of that login is revoked); "
        "`invalid_refresh_token`; `account_disabled`",
    )
)
async def refresh(data: RefreshIn) -> dict[str, Any]:
    found = services()
    settings = found.config.jwt
    new_refresh = new_opaque_token()
    async with found.pool.acquire() as conn:
        outcome, spent = await refresh_tokens.rotate(
            conn,
            token=data.refresh_token,
            new_token=new_refresh,
            ttl=timedelta(seconds=settings.refresh_ttl_s),
        )
        user = await users.by_id(conn, spent.user_id) if spent is not None else None
    if outcome is Outcome.REUSED:
        assert spent is not None
        await audit_refresh_reuse(spent.user_id, spent.family_id)
        raise APIError(
            401,
            "refresh_token_reused",
            "this refresh token was already used; every session of its login is revoked",
        )
    if outcome is not Outcome.ROTATED or user is None:
        raise APIError(401, "invalid_refresh_token", f"the refresh token is {outcome.value}")
    # Disabling revokes the user's refresh tokens; this also stops one issued meanwhile.
    _refuse_disabled(user)
    access, _ = issue_access(settings, user.id, user.role)
    return _tokens(user, access, new_refresh)


@blueprint.post("/logout")
@require_auth
@document_optional_request(LogoutIn)
@document_no_content("Logged out: the access token is revoked at once")
async def logout() -> tuple[str, int]:
    """Revoke the access token at once, and the refresh token's family when one is given."""
    caller = await principal()
    raw = await request.get_data(as_text=False)
    body = LogoutIn.model_validate_json(raw) if raw.strip() else LogoutIn()
    assert caller.claims is not None
    await revoke_access(caller.claims)
    if body.refresh_token:
        async with services().pool.acquire() as conn:
            await refresh_tokens.revoke_token(
                conn, token=body.refresh_token, user_id=caller.user_id
            )
    await audit.record_after(
        "auth.logout",
        actor_id=caller.user_id,
        target=str(caller.user_id),
        details={"refresh_token_revoked": body.refresh_token is not None},
    )
    return "", 204


async def audit_refresh_reuse(user_id: uuid.UUID, family_id: uuid.UUID) -> None:
    """A spent refresh token came back (stolen, or a client bug): its family is revoked."""
    await audit.record_after(
        "auth.refresh_reused",
        actor_id=user_id,
        target=str(user_id),
        outcome="failure",
        details={"family_id": str(family_id)},
    )


@blueprint.get("/me")
@require_auth
@document_response(UserOut)
async def me() -> dict[str, Any]:
    caller = await principal()
    async with services().pool.acquire() as conn:
        user = await users.by_id(conn, caller.user_id)
    if user is None:
        raise APIError(401, "unauthorized", "the account no longer exists")
    return user.public()


@blueprint.post("/ws-ticket")
@require_auth
@document_response(TicketOut)
async def ws_ticket() -> dict[str, Any]:
    """A single-use ticket for opening a WebSocket without putting a JWT in the URL."""
    caller = await principal()
    assert caller.claims is not None
    ttl = services().config.jwt.ws_ticket_ttl_s
    return {"ticket": await mint_ws_ticket(caller.claims, ttl), "expires_in": ttl}
