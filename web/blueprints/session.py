"""Browser sessions: the refresh token lives in an httpOnly cookie, never in the page.

- `POST /api/v1/auth/login`, `/register` and `/mfa/login` (any route under `/api/v1/auth/`
  answering a token pair) asked with the header `X-Vaporform-Session: cookie` set the refresh
  token as the cookie `vf_refresh` (httpOnly, `SameSite=Strict`, `Secure` over HTTPS, path
  `/api/v1/auth/session`) and leave it out of the JSON body. Without the header nothing changes.
- `POST /api/v1/auth/session/refresh` spends the cookie's token (rotation with reuse
  detection, as `/auth/refresh`), sets the new one and answers a new access token.
- `POST /api/v1/auth/session/logout` revokes the cookie's token family and the bearer access
  token (when one is sent) and clears the cookie.

Both cookie routes refuse a request without `X-Requested-With` (which a cross-site form
cannot send) or whose `Origin` is another origin: the cookie is `SameSite=Strict` already,
the header makes forged requests fail even where a browser ignores SameSite.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel
from quart import Blueprint, Response, jsonify, request
from quart_schema import document_headers, document_response, security_scheme

from store import refresh_tokens, users
from store.refresh_tokens import Outcome
from web import audit
from web.auth import principal, revoke_access
from web.blueprints.auth import audit_refresh_reuse
from web.errors import APIError, error_response
from web.openapi import document_errors, document_no_content
from web.services import services
from web.tokens import issue_access, new_opaque_token

blueprint = Blueprint("session", __name__, url_prefix="/api/v1/auth/session")

COOKIE = "vf_refresh"
COOKIE_PATH = "/api/v1/auth/session"
SESSION_HEADER = "X-Vaporform-Session"
CSRF_HEADER = "X-Requested-With"
CSRF_REJECTED = (403, "`csrf_rejected`: no X-Requested-With header, or another Origin")


class UserOut(BaseModel):
    id: str
    email: str
    name: str
    role: str


class SessionOut(BaseModel):
    user: UserOut
    access_token: str
    token_type: str
    expires_in: int


class CookieHeaders(BaseModel):
    x_requested_with: str


def _secure() -> bool:
    return request.scheme == "https" or request.headers.get("X-Forwarded-Proto") == "https"


def set_refresh_cookie(response: Response, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=services().config.jwt.refresh_ttl_s,
        path=COOKIE_PATH,
        secure=_secure(),
        httponly=True,
        samesite="Strict",
    )
    response.headers["Cache-Control"] = "no-store"


def clear_refresh_cookie(response: Response) -> None:
    response.delete_cookie(
        COOKIE, path=COOKIE_PATH, secure=_secure(), httponly=True, samesite="Strict"
    )


def check_same_origin() -> None:
    """The cookie routes' CSRF defence (see the module docstring)."""
    if not request.headers.get(CSRF_HEADER):
        raise APIError(403, "csrf_rejected", f"the {CSRF_HEADER} header is required on this route")
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        parts = urlsplit(origin)
        if parts.netloc != request.host:
            raise APIError(403, "csrf_rejected", "the request comes from another origin")


@blueprint.after_app_request
async def _move_refresh_token_to_cookie(response: Response) -> Response:
    """A sign-in asked in cookie mode: the refresh token goes into the cookie, not the body."""
    if request.headers.get(SESSION_HEADER, "").lower() != "cookie":
        return response
    if not request.path.startswith("/api/v1/auth/") or request.path.startswith(COOKIE_PATH):
        return response
    if response.status_code not in (200, 201) or response.mimetype != "application/json":
        return response
    body = await response.get_json()
    if not isinstance(body, dict) or not isinstance(body.get("refresh_token"), str):
        return response
    token = body.pop("refresh_token")
    response.set_data(json.dumps(body))
    set_refresh_cookie(response, token)
    return response


def _refused(code: str, message: str) -> Response:
    response = error_response(401, code, message)
    clear_refresh_cookie(response)
    return response


@blueprint.post("/refresh")
@security_scheme([{"session_cookie": []}])
@document_headers(CookieHeaders)
@document_response(SessionOut)
@document_errors(
    (401, "`no_session`; `refresh_token_reused`; `invalid_refresh_token`: the cookie is cleared"),
    CSRF_REJECTED,
)
async def refresh() -> Response:
    """A new access token for the session in the `vf_refresh` cookie, which is rotated."""
    check_same_origin()
    token = request.cookies.get(COOKIE)
    if not token:
        return _refused("no_session", "no session cookie: sign in")
    found = services()
    settings = found.config.jwt
    new_token = new_opaque_token()
    async with found.pool.acquire() as conn:
        outcome, spent = await refresh_tokens.rotate(
            conn, token=token, new_token=new_token, ttl=timedelta(seconds=settings.refresh_ttl_s)
        )
        user = await users.by_id(conn, spent.user_id) if spent is not None else None
    if outcome is Outcome.REUSED:
        assert spent is not None
        await audit_refresh_reuse(spent.user_id, spent.family_id)
        return _refused(
            "refresh_token_reused",
            "this session was already refreshed elsewhere; every session of its login is revoked",
        )
    if outcome is not Outcome.ROTATED or user is None:
        return _refused("invalid_refresh_token", f"the session is {outcome.value}: sign in")
    access, _ = issue_access(settings, user.id, user.role)
    body: dict[str, Any] = {
        "user": user.public(),
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": settings.access_ttl_s,
    }
    response = jsonify(body)
    set_refresh_cookie(response, new_token)
    return response


@blueprint.post("/logout")
@security_scheme([{"session_cookie": []}, {"bearer": []}, {}])
@document_headers(CookieHeaders)
@document_no_content("The session is over and the cookie cleared")
@document_errors(CSRF_REJECTED)
async def logout() -> Response:
    """End the browser session: revoke the cookie's token family and, when a bearer token is
    sent, that access token; clear the cookie. 204, also when there was no session."""
    check_same_origin()
    try:
        caller = await principal()
    except APIError:
        caller = None
    if caller is not None and caller.claims is not None:
        await revoke_access(caller.claims)
    actor = caller.user_id if caller is not None else None
    token = request.cookies.get(COOKIE)
    if token:
        async with services().pool.acquire() as conn:
            # Spending the token finds its family whatever its state; then the family goes.
            _, spent = await refresh_tokens.rotate(
                conn, token=token, new_token=new_opaque_token(), ttl=timedelta(seconds=1)
            )
            if spent is not None:
                await refresh_tokens.revoke_family(conn, spent.family_id)
                actor = actor or spent.user_id
    if actor is not None:
        await audit.record_after("auth.logout", actor_id=actor, target=str(actor))
    response = Response("", status=204)
    clear_refresh_cookie(response)
    return response
