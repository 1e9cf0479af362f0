"""quart-auth as the integration point, with our JWTs as its tokens (bearer mode).

`JWTAuth.resolve_user` reads the bearer token (or, for WebSockets, a single-use `?ticket=`)
and `Principal.is_authenticated` does the async half: the revocation list and ticket redemption
live in Redis (or the in-process fallback), which a sync `load_token` cannot reach.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypeVar, cast

from quart import Quart, has_websocket_context, request, websocket
from quart_auth import Action, AuthUser, QuartAuth, current_user

from web.errors import APIError
from web.revocation import REVOKED_PREFIX, revocations
from web.second_factor import enforce_mfa_policy
from web.services import services
from web.tokens import AccessClaims, TokenError, issue_access, new_opaque_token, verify_access

P = ParamSpec("P")
R = TypeVar("R")

TICKET_PREFIX = "ticket:"


class Principal(AuthUser):
    def __init__(
        self,
        auth_id: str | None,
        action: Action = Action.PASS,
        *,
        claims: AccessClaims | None = None,
        ticket: str | None = None,
    ) -> None:
        super().__init__(auth_id, action)
        self.claims = claims
        self._ticket = ticket
        self._checked: bool | None = None

    @property
    async def is_authenticated(self) -> bool:
        if self._checked is None:
            self._checked = await self._check()
        return self._checked

    async def _check(self) -> bool:
        store = services().ephemeral
        if self._ticket is not None:
            raw = await store.take(TICKET_PREFIX + self._ticket)
            if raw is None:
                return False
            data = json.loads(raw)
            self.claims = AccessClaims(
                user_id=uuid.UUID(data["user_id"]),
                role=data["role"],
                jti=data["jti"],
                expires_at=int(data["expires_at"]),
            )
            self._auth_id = data["user_id"]
            # The ticket was minted from an access token: it dies with that token.
        if self.claims is None:
            return False
        if await store.exists(REVOKED_PREFIX + self.claims.jti):
            return False
        # A token outlives nothing about its user: deleted or disabled means 401.
        return await revocations().user_active(self.claims.user_id)

    @property
    def user_id(self) -> uuid.UUID:
        if self.claims is None:
            raise RuntimeError("not authenticated")
        return self.claims.user_id


class JWTAuth(QuartAuth):
    user_class = Principal

    def resolve_user(self) -> AuthUser:
        if has_websocket_context():
            ticket = websocket.args.get("ticket")
            if ticket:
                return Principal(None, ticket=ticket)
            raw = websocket.headers.get("Authorization", "")
        else:
            raw = request.headers.get("Authorization", "")
        scheme, _, token = raw.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Principal(None)
        try:
            claims = verify_access(services().config.jwt, token.strip())
        except TokenError:
            return Principal(None)
        return Principal(str(claims.user_id), claims=claims)

    def dump_token(self, auth_id: str, app: Quart | None = None) -> str:
        settings = services().config.jwt
        return issue_access(settings, uuid.UUID(auth_id), "user")[0]

    def load_token(self, token: str, app: Quart | None = None) -> str | None:
        try:
            return str(verify_access(services().config.jwt, token).user_id)
        except TokenError:
            return None


def unauthorized() -> APIError:
    return APIError(
        401,
        "unauthorized",
        "a valid bearer token is required",
        headers={"WWW-Authenticate": 'Bearer realm="vaporform"'},
    )


async def principal() -> Principal:
    """The authenticated caller, or a 401."""
    user = cast(Principal, current_user._get_current_object())  # type: ignore[attr-defined]
    if not await user.is_authenticated:
        raise unauthorized()
    await enforce_mfa_policy(user.user_id)
    return user


def require_auth(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    @wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        await principal()
        return await func(*args, **kwargs)

    return wrapper


async def revoke_access(claims: AccessClaims) -> None:
    remaining = claims.remaining_s()
    if remaining > 0:
        await services().ephemeral.put(REVOKED_PREFIX + claims.jti, "1", remaining + 5)
    # Sockets opened with this token (or a ticket minted from it) close, on every node.
    await revocations().changed(jti=claims.jti)


async def mint_ws_ticket(claims: AccessClaims, ttl_s: int) -> str:
    ticket = new_opaque_token()
    payload = {
        "user_id": str(claims.user_id),
        "role": claims.role,
        "jti": claims.jti,
        "expires_at": claims.expires_at,
    }
    await services().ephemeral.put(TICKET_PREFIX + ticket, json.dumps(payload), ttl_s)
    return ticket


def init_auth(app: Quart) -> JWTAuth:
    app.config["QUART_AUTH_MODE"] = "bearer"
    return JWTAuth(app, mode="bearer")
