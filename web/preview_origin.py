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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import jwt
from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig
from quart import Quart, Response, request, websocket
from temporalio.client import Client as TemporalClient
from temporalio.service import RPCError, RPCStatusCode
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from agent.grants import HEADER, PREVIEW_AUDIENCE, agent_key, mint, preview_key
from agent.proxy import (
    Limits,
    handshake_headers,
    http_client,
    proxy_server_config,
    pump_websocket,
    relay_http,
)
from store import projects, users
from store.db import create_pool
from store.ephemeral import Ephemeral, open_ephemeral
from vaporform.config import Config
from web.blueprints.previews import ENTER_PATH, TICKET_AUDIENCE, TICKET_PREFIX, preview_id_for
from web.revocation import ACCESS_REVOKED_CLOSE_CODE, REVOKED_PREFIX
from workflows.containers.contract import ContainerStatus
from workflows.containers.entity import ContainerWorkflow
from workflows.containers.names import Status, container_workflow_id

log = logging.getLogger("vaporform.web.previews")

RECHECK_S = 1.0
COOKIE_PREFIX = "vf_preview_"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_CACHE_MAX = 4096


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Session:
    preview_id: str
    user_id: str
    project_id: str
    container_id: str
    port: int
    jti: str


@dataclass(frozen=True, slots=True)
class Target:
    host_port: int
    agent_url: str


def host_pattern(url_template: str) -> re.Pattern[str]:
    """Host headers of previews: the template's host with 32 hex digits for `{id}`."""
    netloc = urlsplit(url_template.replace("{id}", "previewid")).netloc.lower()
    return re.compile("^" + re.escape(netloc).replace("previewid", "([0-9a-f]{32})") + "$")


def cookie_name(preview_id: str) -> str:
    return COOKIE_PREFIX + preview_id[:12]


def _refusal(status: int, message: str) -> Response:
    return Response(
        message + "\n",
        status,
        content_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-store"},
    )


class Previews:
    """The preview origin's clients and its short-lived answers."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.limits = Limits(
            max_body_bytes=config.previews.max_body_bytes,
            max_response_bytes=config.previews.max_response_bytes,
            timeout_s=config.previews.timeout_s,
            max_websocket_message_bytes=config.previews.max_websocket_message_bytes,
        )
        self.session_key = preview_key(config)
        self.grant_key = agent_key(config)
        self.hosts = host_pattern(config.previews.url)
        self.secure = config.previews.url.startswith("https://")
        self.pool: asyncpg.Pool | None = None
        self.ephemeral: Ephemeral | None = None
        self.temporal: TemporalClient | None = None
        self.http: httpx.AsyncClient | None = None
        self._access: dict[tuple[str, ...], tuple[float, Refused | None]] = {}
        self._status: dict[str, tuple[float, ContainerStatus]] = {}

    async def start(self) -> None:
        config = self.config
        self.pool = await create_pool(config.database_url, min_size=1, max_size=5)
        self.ephemeral = open_ephemeral(config.redis_url, config.redis_prefix)
        self.temporal = await TemporalClient.connect(
            config.temporal_address, namespace=config.temporal_namespace, lazy=True
        )
        self.http = http_client(self.limits)

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()
        if self.ephemeral is not None:
            await self.ephemeral.close()
        if self.pool is not None:
            await self.pool.close()

    # -- who is asking -------------------------------------------------------------------

    def preview_of_host(self, host: str | None) -> str:
        matched = self.hosts.match((host or "").lower())
        if matched is None:
            raise Refused(404, "no such preview")
        return matched.group(1)

    def sign(self, session: Session, expires_at: int) -> str:
        claims = {
            "pv": session.preview_id,
            "sub": session.user_id,
            "pid": session.project_id,
            "cid": session.container_id,
            "port": session.port,
            "jti": session.jti,
            "exp": expires_at,
            "aud": PREVIEW_AUDIENCE,
        }
        return jwt.encode(claims, self.session_key, algorithm="HS256")

    def session(self, cookies: Any, preview_id: str) -> Session:
        raw = cookies.get(cookie_name(preview_id))
        if not raw:
            raise Refused(401, "open this preview from the IDE first")
        try:
            claims = jwt.decode(
                raw,
                self.session_key,
                algorithms=["HS256"],
                audience=PREVIEW_AUDIENCE,
                options={"require": ["exp", "aud", "sub", "jti"]},
            )
            found = Session(
                preview_id=str(claims["pv"]),
                user_id=str(claims["sub"]),
                project_id=str(claims["pid"]),
                container_id=str(claims["cid"]),
                port=int(claims["port"]),
                jti=str(claims["jti"]),
            )
        except (jwt.PyJWTError, KeyError, TypeError, ValueError):
            raise Refused(401, "this preview's session ended: open it again from the IDE") from None
        if found.preview_id != preview_id:
            raise Refused(401, "open this preview from the IDE first")
        return found

    async def ticket(self, raw: str) -> dict[str, Any]:
        """The claims of a ticket of `POST .../previews`, the first time it is shown."""
        try:
            data: dict[str, Any] = jwt.decode(
                raw,
                self.session_key,
                algorithms=["HS256"],
                audience=TICKET_AUDIENCE,
                options={"require": ["exp", "aud", "tid"]},
            )
        except jwt.PyJWTError:
            data = {}
        assert self.ephemeral is not None
        if not data or (await self.ephemeral.hit(TICKET_PREFIX + str(data["tid"]), 60))[0] != 1:
            raise Refused(401, "this link was used or has expired: open the preview again")
        return data

    async def member(self, user_id: str, project_id: str) -> None:
        assert self.pool is not None
        async with self.pool.acquire() as conn:
            uid, pid = uuid.UUID(user_id), uuid.UUID(project_id)
            if not await users.is_active(conn, uid):
                raise Refused(401, "this account is disabled")
            if await projects.for_member(conn, pid, uid) is None:
                raise Refused(404, "no such preview")

    async def status(self, project_id: str) -> ContainerStatus:
        now = time.monotonic()
        cached = self._status.get(project_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        assert self.temporal is not None
        handle = self.temporal.get_workflow_handle_for(
            ContainerWorkflow.run, container_workflow_id(project_id)
        )
        try:
            found = await handle.query(ContainerWorkflow.status)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise Refused(503, "the preview is unavailable, retry later") from exc
            found = ContainerStatus(project_id, container_workflow_id(project_id), Status.STOPPED)
        self._remember(self._status, project_id, (now + RECHECK_S, found))
        return found

    async def check(self, session: Session) -> Target:
        """Still allowed (cached for RECHECK_S), and where the preview's port is now."""
        key = (session.user_id, session.project_id, session.jti)
        now = time.monotonic()
        cached = self._access.get(key)
        if cached is None or cached[0] <= now:
            refused: Refused | None = None
            try:
                assert self.ephemeral is not None
                if await self.ephemeral.exists(REVOKED_PREFIX + session.jti):
                    raise Refused(401, "you signed out: open this preview again from the IDE")
                await self.member(session.user_id, session.project_id)
            except Refused as exc:
                refused = exc
            self._remember(self._access, key, (now + RECHECK_S, refused))
        elif cached[1] is not None:
            refused = cached[1]
        else:
            refused = None
        if refused is not None:
            raise refused
        status = await self.status(session.project_id)
        host_port = status.ports.get(str(session.port))
        if (
            status.status != Status.RUNNING
            or status.container_id != session.container_id
            or host_port is None
        ):
            raise Refused(410, "this preview closed: its container stopped")
        agent = status.agent_url or self.config.agent.url_for(status.docker_queue)
        return Target(host_port=host_port, agent_url=agent)

    @staticmethod
    def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[key] = value

    def grant(self, session: Session, target: Target) -> str:
        return mint(
            self.grant_key,
            issuer=self.config.jwt.issuer,
            user_id=session.user_id,
            project_id=session.project_id,
            container_id=session.container_id,
            purpose="preview",
            port=target.host_port,
            ttl_s=self.config.agent.grant_ttl_s,
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
