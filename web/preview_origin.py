"""The preview origin: dev servers of project containers, on origins that are not the IDE's.

A small ASGI app of its own, served by the API process on its own listener
(`VAPORFORM_PREVIEW_HOST`/`_PORT`, 127.0.0.1:8001) and never by the API's app. Each preview
has its own origin, named by `VAPORFORM_PREVIEW_URL` (default
`http://{id}.preview.localhost:8001`: browsers resolve `*.localhost` to loopback; in production
`https://{id}.preview.example.com` with a wildcard certificate, on a registrable domain apart
from the IDE's). User code running there cannot read the IDE's tokens or cookies.

- `GET /p/enter?ticket=` takes the one-time ticket of `POST /api/v1/projects/{pid}/previews`
  (it must be for this host's preview), checks membership and answers 303 to the ticket's path
  with an httpOnly, SameSite=Lax, host-only cookie `vf_preview_<id>`: a signed session that
  lives as long as the access token the ticket came from.
- Every other request and WebSocket needs that cookie; the cookie is taken out and the rest is
  relayed, streamed, to the agent of the container's host with a one-time preview grant
  (agent/app.py), which relays it to the container's published port.
- Checked per request, from answers at most `RECHECK_S` old: the user is still a member (any
  role), the account active, the token not revoked, the container still the one the preview
  was opened on and running. Open WebSockets are re-checked as often and closed with 4003 when
  one fails. A stopped container answers 410.

This module is the app and its relays; who may pass (tickets, sessions, the re-checks, grants)
is web/preview_access.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig
from quart import Quart, Response, request, websocket
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from agent.grants import HEADER
from agent.proxy import handshake_headers, proxy_server_config, pump_websocket, relay_http
from vaporform.config import Config
from web.blueprints.previews import ENTER_PATH, preview_id_for
from web.preview_access import RECHECK_S, Previews, Refused, Session, cookie_name
from web.revocation import ACCESS_REVOKED_CLOSE_CODE

log = logging.getLogger("vaporform.web.previews")

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _refusal(status: int, message: str) -> Response:
    return Response(
        message + "\n",
        status,
        content_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-store"},
    )


def _without_cookie(header: str | None, name: str) -> str:
    """The Cookie header without ours: the preview's own code never sees its session."""
    kept = [
        part.strip()
        for part in (header or "").split(";")
        if part.strip() and part.strip().split("=", 1)[0] != name
    ]
    return "; ".join(kept)


def create_preview_app(config: Config) -> Quart:
    app = Quart("vaporform-previews", static_folder=None)
    app.url_map.merge_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = config.previews.max_body_bytes
    app.config["BODY_TIMEOUT"] = config.previews.max_request_s
    app.config["RESPONSE_TIMEOUT"] = config.previews.max_request_s
    previews = Previews(config)
    app.extensions["vaporform.previews"] = previews

    app.before_serving(previews.start)
    app.after_serving(previews.close)

    @app.get(ENTER_PATH)
    async def enter() -> Response:
        try:
            preview_id = previews.preview_of_host(request.host)
            data = await previews.ticket(request.args.get("ticket", ""))
            if data["preview_id"] != preview_id:
                raise Refused(401, "this link is for another preview")
            session = Session(
                preview_id=preview_id,
                user_id=data["user_id"],
                project_id=data["project_id"],
                container_id=data["container_id"],
                port=int(data["port"]),
                jti=data["jti"],
            )
            await previews.check(session)
        except Refused as exc:
            return _refusal(exc.status, exc.message)
        expires_at = int(data["expires_at"])
        answer = Response("", 303, headers={"Location": data.get("path") or "/"})
        answer.headers["Cache-Control"] = "no-store"
        answer.headers["Referrer-Policy"] = "no-referrer"  # the ticket was in this URL
        answer.set_cookie(
            cookie_name(preview_id),
            previews.sign(session, expires_at),
            max_age=max(1, expires_at - int(time.time())),
            path="/",
            secure=previews.secure,
            httponly=True,
            samesite="Lax",
        )
        return answer

    @app.route("/", methods=METHODS, provide_automatic_options=False)
    @app.route("/<path:path>", methods=METHODS, provide_automatic_options=False)
    async def relay(path: str = "") -> Response:
        try:
            preview_id = previews.preview_of_host(request.host)
            session = previews.session(request.cookies, preview_id)
            target = await previews.check(session)
        except Refused as exc:
            return _refusal(exc.status, exc.message)
        assert previews.http is not None
        raw = request.scope.get("raw_path") or request.path.encode()
        query = request.query_string.decode("latin-1")
        url = f"{target.agent_url}/v1/preview{raw.decode('latin-1')}" + (
            f"?{query}" if query else ""
        )
        add = [
            (HEADER, previews.grant(session, target)),
            ("X-Forwarded-Host", request.host),
            ("X-Forwarded-Proto", "https" if previews.secure else "http"),
        ]
        cookies = _without_cookie(request.headers.get("cookie"), cookie_name(preview_id))
        if cookies:
            add.append(("Cookie", cookies))
        return await relay_http(
            previews.http, url, previews.limits, drop=("cookie", HEADER), add=add
        )

    @app.websocket("/")
    @app.websocket("/<path:path>")
    async def relay_socket(path: str = "") -> Any:
        try:
            preview_id = previews.preview_of_host(websocket.host)
            origin = websocket.headers.get("origin")
            if origin is not None and urlsplit(origin).netloc.lower() != websocket.host.lower():
                raise Refused(403, "a preview's WebSockets are for its own pages")
            session = previews.session(websocket.cookies, preview_id)
            target = await previews.check(session)
        except Refused as exc:
            return _refusal(exc.status, exc.message)
        raw = websocket.scope.get("raw_path") or websocket.path.encode()
        query = websocket.query_string.decode("latin-1")
        url = f"{target.agent_url.replace('http', 'ws', 1)}/v1/preview{raw.decode('latin-1')}"
        url += f"?{query}" if query else ""
        headers = [*handshake_headers(drop=("cookie", HEADER, "origin"))]
        headers.append((HEADER, previews.grant(session, target)))
        cookies = _without_cookie(websocket.headers.get("cookie"), cookie_name(preview_id))
        if cookies:
            headers.append(("Cookie", cookies))
        try:
            upstream = await connect(
                url,
                additional_headers=headers,
                origin=origin,  # type: ignore[arg-type]
                subprotocols=websocket.requested_subprotocols or None,  # type: ignore[arg-type]
                max_size=previews.limits.max_websocket_message_bytes,
                open_timeout=previews.limits.timeout_s,
                compression=None,
                proxy=None,
            )
        except InvalidStatus as exc:
            return Response(exc.response.body or b"", exc.response.status_code)
        except (OSError, InvalidHandshake, TimeoutError):
            return _refusal(502, "the preview is not answering")
        await websocket.accept(subprotocol=upstream.subprotocol)

        async def rechecked() -> str:
            while True:
                await asyncio.sleep(RECHECK_S)
                try:
                    await previews.check(session)
                except Refused as exc:
                    return exc.message

        watch = asyncio.ensure_future(rechecked())
        pump = asyncio.ensure_future(pump_websocket(upstream))
        try:
            done, _ = await asyncio.wait({watch, pump}, return_when=asyncio.FIRST_COMPLETED)
            if watch in done:
                with contextlib.suppress(Exception):
                    await upstream.close()
                with contextlib.suppress(Exception):
                    await websocket.close(ACCESS_REVOKED_CLOSE_CODE, watch.result()[:120])
        finally:
            for task in (watch, pump):
                task.cancel()
            await asyncio.gather(watch, pump, return_exceptions=True)
        return None

    return app


def preview_hypercorn_config(config: Config, *, quiet: bool = False) -> HypercornConfig:
    return proxy_server_config(
        f"{config.previews.host}:{config.previews.port}",
        config.previews.max_websocket_message_bytes,
        quiet=quiet,
    )


async def serve_previews(config: Config, stop: asyncio.Event, *, quiet: bool = False) -> None:
    await serve(
        create_preview_app(config),
        preview_hypercorn_config(config, quiet=quiet),
        shutdown_trigger=stop.wait,
    )


__all__ = ["create_preview_app", "preview_id_for", "serve_previews"]
