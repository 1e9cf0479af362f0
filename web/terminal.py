"""The terminal WebSocket: an interactive shell (a tty) in the project's container.

A shell is a byte stream that Temporal cannot carry, so this is the one place where the API
talks to the Docker engine itself (`DOCKER_HOST` or the local socket). The WebSocket is a thin
pump between the browser and the exec's hijacked socket:

- client -> server: binary frames are keystrokes (stdin); text frames are JSON controls:
  `{"type": "stdin", "data": "ls\\r"}`, `{"type": "resize", "cols": 120, "rows": 40}`,
  `{"type": "ping"}` (answered with `{"type": "pong"}`).
- server -> client: binary frames are the terminal's output; a final text frame
  `{"type": "exit", "exit_code": N}` before the server closes (the shell ended or the container
  stopped). Malformed controls get `{"type": "error", "code", "message"}` and the connection stays.

Auth: `Authorization: Bearer` header or a single-use `?ticket=`. Viewers may not open one (403),
non-members get 404, a stopped container 409, all before the WebSocket is accepted. An open
terminal closes with code 4003 (web/revocation.py) when its user stops being an editor of the
project (made viewer, removed), the token it was opened with is revoked, the project is deleted
or the account disabled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from typing import Any

from quart import Blueprint, current_app, websocket

from vaporform.images import RUNTIME_UID
from web.access import ROLE_RANK, caller_project
from web.blueprints.containers import current_status, touch
from web.errors import APIError, error_response
from web.revocation import ACCESS_REVOKED_CLOSE_CODE, revocations
from web.services import services
from workflows.container_shared import Status

log = logging.getLogger("vaporform.web.terminal")
blueprint = Blueprint("terminal", __name__, url_prefix="/api/v1/projects")

DOCKER_KEY = "vaporform.docker"
TOUCH_EVERY_S = 30.0
MAX_CONTROL_BYTES = 64 * 1024
SHELL = ["/bin/sh", "-c", "if command -v bash >/dev/null; then exec bash -l; else exec sh -l; fi"]


def docker_client() -> Any:
    """The API's Docker client, made on first use (a process without a terminal needs none)."""
    found = current_app.extensions.get(DOCKER_KEY)
    if found is None:
        import docker
        import docker.errors

        url = services().config.containers.docker_url
        try:
            found = docker.DockerClient(base_url=url) if url else docker.from_env()
        except docker.errors.DockerException as exc:
            raise APIError(503, "docker_unavailable", "the Docker engine is unreachable") from exc
        current_app.extensions[DOCKER_KEY] = found
    return found


class TerminalSession:
    """One shell: the exec, its raw socket and the two pumps."""

    def __init__(self, client: Any, exec_id: str, wrapper: Any, sock: socket.socket) -> None:
        self.client = client
        self.exec_id = exec_id
        self.wrapper = wrapper  # docker-py's SocketIO: holds a reference on the socket
        self.sock = sock

    @classmethod
    async def open(cls, client: Any, container_id: str) -> TerminalSession:
        def _start() -> TerminalSession:
            api = client.api
            exec_id = api.exec_create(
                container_id,
                SHELL,
                stdin=True,
                tty=True,
                user=f"{RUNTIME_UID}:{RUNTIME_UID}",
                workdir="/workspace",
                environment={"TERM": "xterm-256color", "HOME": "/workspace"},
            )["Id"]
            wrapped = api.exec_start(exec_id, tty=True, socket=True)
            raw: socket.socket = getattr(wrapped, "_sock", wrapped)
            raw.setblocking(False)
            return cls(client, exec_id, wrapped, raw)

        return await asyncio.to_thread(_start)

    async def resize(self, cols: int, rows: int) -> None:
        await asyncio.to_thread(self.client.api.exec_resize, self.exec_id, rows, cols)

    async def exit_code(self) -> int | None:
        info = await asyncio.to_thread(self.client.api.exec_inspect, self.exec_id)
        code = info.get("ExitCode")
        return None if code is None else int(code)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.wrapper.close()
            self.sock.close()


def _control(raw: str) -> dict[str, Any]:
    if len(raw) > MAX_CONTROL_BYTES:
        raise ValueError("control message too large")
    message = json.loads(raw)
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ValueError('a control message is an object with a "type"')
    return message


async def _pump_output(session: TerminalSession) -> None:
    loop = asyncio.get_running_loop()
    while True:
        chunk = await loop.sock_recv(session.sock, 65536)
        if not chunk:
            return
        await websocket.send(chunk)


async def _pump_input(session: TerminalSession, project_id: Any, user_id: str) -> None:
    loop = asyncio.get_running_loop()
    last_touch = time.monotonic()
    while True:
        message = await websocket.receive()
        data: bytes | None = None
        if isinstance(message, bytes):
            data = message
        else:
            try:
                control = _control(message)
                kind = control["type"]
                if kind == "stdin" and isinstance(control.get("data"), str):
                    data = control["data"].encode()
                elif kind == "resize":
                    cols, rows = int(control["cols"]), int(control["rows"])
                    if not (1 <= cols <= 1000 and 1 <= rows <= 1000):
                        raise ValueError("cols and rows must be within 1..1000")
                    await session.resize(cols, rows)
                elif kind == "ping":
                    await websocket.send(json.dumps({"type": "pong"}))
                else:
                    raise ValueError(f"unknown control {kind!r}")
            except (ValueError, KeyError, TypeError) as exc:
                error = {"type": "error", "code": "bad_message", "message": str(exc)[:200]}
                await websocket.send(json.dumps(error))
                continue
        if data:
            await loop.sock_sendall(session.sock, data)
            if time.monotonic() - last_touch > TOUCH_EVERY_S:
                last_touch = time.monotonic()
                await touch(project_id, user_id)


@blueprint.websocket("/<project_id>/terminal")
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
        session = await TerminalSession.open(docker_client(), status.container_id)
    except APIError as exc:
        # Refused before the WebSocket is accepted: the client sees a real HTTP status.
        response = error_response(exc.status, exc.code, exc.message, exc.details)
        response.headers.update(exc.headers)
        return response
    await websocket.accept()
    await touch(project.id, str(caller.user_id))
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
    output = asyncio.ensure_future(_pump_output(session))
    stdin = asyncio.ensure_future(_pump_input(session, project.id, str(caller.user_id)))
    ended = asyncio.ensure_future(gone.wait())
    try:
        done, _ = await asyncio.wait({output, stdin, ended}, return_when=asyncio.FIRST_COMPLETED)
        if output in done and not revoked:
            exit_code = await session.exit_code()
            await websocket.send(json.dumps({"type": "exit", "exit_code": exit_code}))
            await websocket.close(1000)
    finally:
        watch.close()
        for task in (output, stdin, ended):
            task.cancel()
        await asyncio.gather(output, stdin, ended, return_exceptions=True)
        session.close()
        if revoked:
            # The shell's input ends with the exec socket, as on any disconnect.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(websocket.close(ACCESS_REVOKED_CLOSE_CODE, revoked[0]), 2)


@blueprint.after_app_serving
async def _close_docker() -> None:
    found = current_app.extensions.pop(DOCKER_KEY, None)
    if found is not None:
        found.close()
