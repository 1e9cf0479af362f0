"""Terminal streams: an interactive shell (a tty) in a project's container.

Served at `WS /v1/terminal` with a `terminal` grant in the `X-Vaporform-Grant` header. The
protocol is the browser's (web/terminal.py documents it); the API only pumps frames:

- in: binary frames are keystrokes; text frames are JSON controls `stdin`, `resize`, `ping`;
- out: binary frames are the terminal's output; `{"type": "exit", "exit_code": N}` and close
  1000 when the shell ends (or the container stops); `{"type": "error", ...}` for a bad control.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import Any

from quart import websocket

from vaporform.images import RUNTIME_UID
from workflows.containers.names import LABEL_MANAGED, LABEL_PROJECT, container_name

MAX_CONTROL_BYTES = 64 * 1024
SHELL = ["/bin/sh", "-c", "if command -v bash >/dev/null; then exec bash -l; else exec sh -l; fi"]


def belongs_to(container: Any, project_id: str) -> bool:
    """Ours and the project's: labelled with it when created for it, or a warm-pool member the
    project claimed (labels cannot change after creation; adoption renames it instead)."""
    labels = container.attrs.get("Config", {}).get("Labels") or {}
    if labels.get(LABEL_MANAGED) != "true":
        return False
    return bool(
        labels.get(LABEL_PROJECT) == project_id or container.name == container_name(project_id)
    )


class ContainerRefused(Exception):
    """The grant's container is not a running container of the grant's project here."""


class TerminalSession:
    """One shell: the exec, its raw socket and the two pumps."""

    def __init__(self, client: Any, exec_id: str, wrapper: Any, sock: socket.socket) -> None:
        self.client = client
        self.exec_id = exec_id
        self.wrapper = wrapper  # docker-py's SocketIO: holds a reference on the socket
        self.sock = sock

    @classmethod
    async def open(cls, client: Any, container_id: str, project_id: str) -> TerminalSession:
        import docker.errors

        def _start() -> TerminalSession:
            try:
                container = client.containers.get(container_id)
            except docker.errors.NotFound:
                raise ContainerRefused("no such container on this host") from None
            if not belongs_to(container, project_id):
                raise ContainerRefused("the container is not the project's")
            if container.status != "running":
                raise ContainerRefused("the container is not running")
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


async def _pump_input(session: TerminalSession) -> None:
    loop = asyncio.get_running_loop()
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


async def serve_terminal(session: TerminalSession) -> None:
    """Run the accepted WebSocket against `session` until the shell or the socket ends."""
    output = asyncio.ensure_future(_pump_output(session))
    stdin = asyncio.ensure_future(_pump_input(session))
    try:
        done, _ = await asyncio.wait({output, stdin}, return_when=asyncio.FIRST_COMPLETED)
        if output in done:
            exit_code = await session.exit_code()
            await websocket.send(json.dumps({"type": "exit", "exit_code": exit_code}))
            await websocket.close(1000)
    finally:
        for task in (output, stdin):
            task.cancel()
        await asyncio.gather(output, stdin, return_exceptions=True)
        # The shell's input ends with the exec socket, as on any disconnect.
        session.close()
