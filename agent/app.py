"""The agent's HTTP/WebSocket server: one per Docker host, on an internal address.

Nothing is served without a grant (agent/grants.py) in the `X-Vaporform-Grant` header, and a
grant works once. Routes:

| route | grant | does |
|---|---|---|
| `GET /healthz` | none | `{"status": "ok"}` |
| `WS /v1/terminal` | terminal | a shell in the grant's container (agent/terminal.py) |
| `* /v1/preview/<path>` | preview | HTTP to `127.0.0.1:<port>/<path>` on this host, streamed |
| `WS /v1/preview/<path>` | preview | WebSocket to `ws://127.0.0.1:<port>/<path>`, relayed |
| `POST /v1/workspace/sync` | workspace | the grant's project's `paths` into its workspace here |

The sync takes `{"paths": [...]}` (null: every path) and answers `{"conflicts": [{"path",
"kind"}]}`, what the workspace refused. While serving, the agent also keeps this host's
workspaces in step with PostgreSQL and runs the watcher that imports what programs change in
them (agent/workspaces.py).

The preview's port is the one the grant names (the API read it from the container's status:
where Docker published the container's port on this host's loopback). The agent connects to
loopback only, and only to ports in the kernel's ephemeral range, where Docker publishes them.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import httpx
from quart import Quart, Response, request, websocket
from temporalio.client import Client as TemporalClient
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from agent.grants import HEADER, MAX_TTL_S, USED_PREFIX, Grant, GrantError, agent_key, verify
from agent.proxy import Limits, handshake_headers, http_client, pump_websocket, relay_http
from agent.terminal import ContainerRefused, TerminalSession, serve_terminal
from agent.workspace_sync import MAX_PATHS, ROUTE
from agent.workspaces import HostWorkspaces, open_workspaces
from files.service import FileSystem
from store.ephemeral import Ephemeral, open_ephemeral
from vaporform.config import Config

log = logging.getLogger("vaporform.agent")

EPHEMERAL_KEY = "vaporform.agent.ephemeral"
HTTP_KEY = "vaporform.agent.http"
WORKSPACES_KEY = "vaporform.agent.workspaces"
PREFIX = "/v1/preview"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def ephemeral_port_range(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> range:
    try:
        low, high = (int(part) for part in path.read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def _error(status: int, code: str, message: str) -> Response:
    response = Response(
        f'{{"error": {{"code": "{code}", "message": "{message}"}}}}',
        status,
        content_type="application/json",
    )
    return response


def create_agent_app(
    config: Config,
    docker_client: Any,
    *,
    files: FileSystem | None = None,
    temporal: TemporalClient | None = None,
) -> Quart:
    """`files` and `temporal`: the worker's, when the agent runs in it; else its own."""
    app = Quart("vaporform-agent", static_folder=None)
    app.url_map.merge_slashes = False
    limits = Limits(
        max_body_bytes=config.previews.max_body_bytes,
        max_response_bytes=config.previews.max_response_bytes,
        timeout_s=config.previews.timeout_s,
        max_websocket_message_bytes=config.previews.max_websocket_message_bytes,
    )
    app.config["MAX_CONTENT_LENGTH"] = limits.max_body_bytes
    app.config["BODY_TIMEOUT"] = config.previews.max_request_s
    app.config["RESPONSE_TIMEOUT"] = config.previews.max_request_s
    key = agent_key(config)
    ports = ephemeral_port_range()

    @app.before_serving
    async def _start() -> None:
        app.extensions[EPHEMERAL_KEY] = open_ephemeral(config.redis_url, config.redis_prefix)
        app.extensions[HTTP_KEY] = http_client(limits)
        app.extensions[WORKSPACES_KEY] = await open_workspaces(config, files, temporal)

    @app.after_serving
    async def _stop() -> None:
        workspaces = app.extensions.pop(WORKSPACES_KEY, None)
        if workspaces is not None:
            await workspaces[1]()
        found: Ephemeral | None = app.extensions.pop(EPHEMERAL_KEY, None)
        if found is not None:
            await found.close()
        client: httpx.AsyncClient | None = app.extensions.pop(HTTP_KEY, None)
        if client is not None:
            await client.aclose()

    async def granted(headers: Any, purpose: str) -> Grant:
        token = headers.get(HEADER)
        if not token:
            raise GrantError("no grant")
        grant = verify(key, token, issuer=config.jwt.issuer, purpose=purpose)
        ephemeral: Ephemeral = app.extensions[EPHEMERAL_KEY]
        uses, _ = await ephemeral.hit(USED_PREFIX + grant.jti, MAX_TTL_S + 5)
        if uses != 1:
            raise GrantError("the grant was used already")
        if grant.port is not None and grant.port not in ports:
            raise GrantError("the port is not one Docker publishes")
        return grant

    def target(grant: Grant, scheme: str, asked: Any) -> str:
        """Where `asked` (the request or the WebSocket) goes: its raw path without our prefix."""
        raw = asked.scope.get("raw_path") or asked.path.encode()
        rest = raw.decode("latin-1").removeprefix(PREFIX) or "/"
        query = asked.query_string.decode("latin-1")
        return f"{scheme}://127.0.0.1:{grant.port}{rest}" + (f"?{query}" if query else "")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.websocket("/v1/terminal")
    async def terminal() -> Any:
        try:
            grant = await granted(websocket.headers, "terminal")
            session = await TerminalSession.open(
                docker_client, grant.container_id, grant.project_id
            )
        except GrantError as exc:
            return _error(401, "invalid_grant", str(exc)[:200])
        except ContainerRefused as exc:
            return _error(409, "container_not_running", str(exc))
        log.info(
            "terminal",
            extra={"project_id": grant.project_id, "user_id": grant.user_id},
        )
        await websocket.accept()
        await serve_terminal(session)
        return None

    @app.post(ROUTE)
    async def workspace_sync() -> Any:
        try:
            grant = await granted(request.headers, "workspace")
        except GrantError as exc:
            return _error(401, "invalid_grant", str(exc)[:200])
        body = await request.get_json(silent=True)
        paths = body.get("paths") if isinstance(body, dict) else None
        valid = paths is None or (
            isinstance(paths, list)
            and len(paths) <= MAX_PATHS
            and all(isinstance(p, str) for p in paths)
        )
        if not isinstance(body, dict) or not valid:
            return _error(400, "bad_request", "expected {paths: [string] or null}")
        host: HostWorkspaces = app.extensions[WORKSPACES_KEY][0]
        conflicts = await host.sync(uuid.UUID(grant.project_id), paths)
        return {"conflicts": [{"path": c.path, "kind": c.kind} for c in conflicts]}

    @app.route(PREFIX, methods=METHODS, provide_automatic_options=False)
    @app.route(PREFIX + "/", methods=METHODS, provide_automatic_options=False)
    @app.route(PREFIX + "/<path:path>", methods=METHODS, provide_automatic_options=False)
    async def preview(path: str = "") -> Response:
        try:
            grant = await granted(request.headers, "preview")
        except GrantError as exc:
            return _error(401, "invalid_grant", str(exc)[:200])
        client: httpx.AsyncClient = app.extensions[HTTP_KEY]
        return await relay_http(client, target(grant, "http", request), limits, drop=(HEADER,))

    @app.websocket(PREFIX)
    @app.websocket(PREFIX + "/")
    @app.websocket(PREFIX + "/<path:path>")
    async def preview_socket(path: str = "") -> Any:
        try:
            grant = await granted(websocket.headers, "preview")
        except GrantError as exc:
            return _error(401, "invalid_grant", str(exc)[:200])
        try:
            upstream = await connect(
                target(grant, "ws", websocket),
                additional_headers=handshake_headers(drop=(HEADER, "origin")),
                origin=websocket.headers.get("origin"),  # type: ignore[arg-type]
                subprotocols=websocket.requested_subprotocols or None,  # type: ignore[arg-type]
                max_size=limits.max_websocket_message_bytes,
                open_timeout=limits.timeout_s,
                compression=None,
                proxy=None,
            )
        except InvalidStatus as exc:
            return Response(exc.response.body or b"", exc.response.status_code)
        except (OSError, InvalidHandshake, TimeoutError):
            return _error(502, "preview_unreachable", "the preview is not answering")
        await websocket.accept(subprotocol=upstream.subprotocol)
        await pump_websocket(upstream)
        return None

    return app
