"""The terminal WebSocket: an interactive shell (a tty) in the project's container.

The API never opens the Docker socket: the shell is served by the agent of the container's
Docker host (agent/terminal.py), and this WebSocket is a thin pump between the browser and
the agent, opened with a terminal grant (agent/grants.py) that only the API can mint. The
protocol the browser sees:

- client -> server: binary frames are keystrokes (stdin); text frames are JSON controls:
  `{"type": "stdin", "data": "ls\\r"}`, `{"type": "resize", "cols": 120, "rows": 40}`,
  `{"type": "ping"}` (answered with `{"type": "pong"}`).
- server -> client: binary frames are the terminal's output; a final text frame
  `{"type": "exit", "exit_code": N}` before the server closes (the shell ended or the container
  stopped). Malformed controls get `{"type": "error", "code", "message"}` and the connection stays.

Auth: `Authorization: Bearer` header or a single-use `?ticket=`. Viewers may not open one (403),
non-members get 404, a stopped container 409, an unreachable agent 503, all before the
WebSocket is accepted. An open terminal closes with code 4003 (web/revocation.py) when its user
stops being an editor of the project (made viewer, removed), the token it was opened with is
revoked, the project is deleted or the account disabled; the agent's stream is closed with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from quart import Blueprint, websocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from agent.grants import HEADER, agent_key, mint
from web import audit
from web.access import ROLE_RANK, caller_project
from web.containers_edge import agent_url, current_status, touch
from web.errors import APIError, error_response
from web.openapi import document_errors, document_websocket
from web.revocation import ACCESS_REVOKED_CLOSE_CODE, revocations
from web.services import services
from workflows.containers.contract import ContainerStatus
from workflows.containers.names import Status

log = logging.getLogger("vaporform.web.terminal")
blueprint = Blueprint("terminal", __name__, url_prefix="/api/v1/projects")

TOUCH_EVERY_S = 30.0
AGENT_OPEN_TIMEOUT_S = 10.0
# Terminal output comes in chunks of at most 64 KiB (agent/terminal.py).
MAX_AGENT_FRAME_BYTES = 1024 * 1024


async def open_agent_terminal(status: ContainerStatus, user_id: str) -> ClientConnection:
    """A shell in the container, from the agent of its host."""
    config = services().config
    assert status.container_id is not None
    grant = mint(
        agent_key(config),
        issuer=config.jwt.issuer,
        user_id=user_id,
        project_id=status.project_id,
        container_id=status.container_id,
        purpose="terminal",
        ttl_s=config.agent.grant_ttl_s,
    )
    url = agent_url(status).replace("http", "ws", 1) + "/v1/terminal"
    try:
        return await connect(
            url,
            additional_headers={HEADER: grant},
            open_timeout=AGENT_OPEN_TIMEOUT_S,
            max_size=MAX_AGENT_FRAME_BYTES,
            compression=None,
            proxy=None,
        )
    except InvalidStatus as exc:
        if exc.response.status_code == 409:
            raise APIError(
                409, "container_not_running", "the container is not running; start it first"
            ) from exc
        log.warning("the agent refused a terminal: %s", exc.response.status_code)
        raise APIError(503, "agent_unavailable", "the container's host is unavailable") from exc
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        log.warning("no agent at %s: %s", url, exc)
        raise APIError(503, "agent_unavailable", "the container's host is unavailable") from exc


async def _to_agent(agent: ClientConnection, project_id: Any, user_id: str) -> None:
    last_touch = time.monotonic()
    while True:
        message = await websocket.receive()
        await agent.send(message)
        if time.monotonic() - last_touch > TOUCH_EVERY_S:
            last_touch = time.monotonic()
            await touch(project_id, user_id)


async def _to_browser(agent: ClientConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for message in agent:
            await websocket.send(message)


@blueprint.websocket("/<project_id>/terminal")
@document_websocket(
    "an interactive shell (a tty) in the project's container", "docs/protocol.md#terminal-websocket"
)
@document_errors(
    (403, "`forbidden`: needs the editor role"),
    (409, "`container_not_running`: start it first"),
    (503, "`agent_unavailable`: the container's host; `workflow_unavailable`: retry later"),
)
async def terminal(project_id: str) -> Any:
    try:
        project, caller = await caller_project(project_id, need="editor")
        status = await current_status(project.id)
        if status.status != Status.RUNNING or not status.container_id:
            raise APIError(
                409,
                "container_not_running",
                "the container is not running; start it first",
                details={"status": status.status},
            )
        agent = await open_agent_terminal(status, str(caller.user_id))
    except APIError as exc:
        # Refused before the WebSocket is accepted: the client sees a real HTTP status.
        response = error_response(exc.status, exc.code, exc.message, exc.details)
        response.headers.update(exc.headers)
        return response
    try:
        await websocket.accept()
        await touch(project.id, str(caller.user_id))
        await audit.record_after(
            "terminal.opened",
            actor_id=caller.user_id,
            project_id=project.id,
            target=status.container_id,
        )
        await _pump(agent, project, caller)
    finally:
        with contextlib.suppress(Exception):
            await agent.close()


async def _pump(agent: ClientConnection, project: Any, caller: Any) -> None:
    assert caller.claims is not None
    revoked: list[str] = []
    gone = asyncio.Event()

    def revoke(reason: str) -> None:
        revoked.append(reason)
        gone.set()

    def role_changed(role: str) -> None:
        if ROLE_RANK[role] < ROLE_RANK["editor"]:
            watch.revoke(f"your role is now {role}")

    watch = revocations().watch(
        user_id=caller.user_id,
        project_id=project.id,
        jti=caller.claims.jti,
        role=project.role,
        on_revoke=revoke,
        on_role=role_changed,
    )
    output = asyncio.ensure_future(_to_browser(agent))
    stdin = asyncio.ensure_future(_to_agent(agent, project.id, str(caller.user_id)))
    ended = asyncio.ensure_future(gone.wait())
    try:
        done, _ = await asyncio.wait({output, stdin, ended}, return_when=asyncio.FIRST_COMPLETED)
        if output in done and not revoked:
            # The agent ended the stream: the shell exited (it sent `exit`) or the host went.
            code = 1000 if agent.close_code == 1000 else 1011
            await websocket.close(code, "" if code == 1000 else "the terminal's host went away")
    finally:
        watch.close()
        for task in (output, stdin, ended):
            task.cancel()
        await asyncio.gather(output, stdin, ended, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(agent.close(), 2)
        if revoked:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(websocket.close(ACCESS_REVOKED_CLOSE_CODE, revoked[0]), 2)
