"""How the API is served: one ASGI server for `vaporform api`, the tests and the benchmarks.

`VAPORFORM_SERVER` picks it: `granian` (the default: Rust HTTP and WebSocket framing, no
permessage-deflate, measured fastest in bench/collab_results.md), `uvicorn` (uvloop,
`websockets-sansio`, deflate off) or `hypercorn` (pure Python, always offers deflate).
`vaporform api --workers N` (`VAPORFORM_API_WORKERS`) runs N processes on one port; they share
the Redis fan-out like API nodes on different hosts (set `REDIS_URL`).

What the app relies on from any of them, and where it is kept when a server lacks it:
lifespan (`before_serving` / `after_serving`), refusing a WebSocket with an HTTP response
before accepting it, a WebSocket message size cap, graceful shutdown. `guarded` adapts the
app: it hands Granian a refusal body in one piece (Quart streams it in chunks, which Granian
does not support) and closes with 1009 any WebSocket message over the cap (Granian has no
setting for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from hypercorn.config import Config as HypercornConfig

from vaporform.config import Config

# The collaboration protocol's largest message is 256 KiB (collab/settings.py); a terminal
# frame is far smaller. Anything bigger closes the socket with 1009.
WEBSOCKET_MAX_MESSAGE_BYTES = 1024 * 1024
# Open connections get this long to finish when the server is asked to stop.
GRACEFUL_TIMEOUT_S = 5
SERVERS = ("granian", "uvicorn", "hypercorn")
DEFAULT_SERVER = "granian"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Loose on purpose: Quart's own ASGI types are narrower unions of TypedDicts.
ASGIApp = Callable[..., Awaitable[None]]


def server_name(env: MutableMapping[str, str] | None = None) -> str:
    found = (os.environ if env is None else env).get("VAPORFORM_SERVER", DEFAULT_SERVER)
    if found not in SERVERS:
        raise ValueError(f"VAPORFORM_SERVER must be one of {', '.join(SERVERS)}, not {found!r}")
    return found


def hypercorn_config(config: Config, *, quiet: bool = False) -> HypercornConfig:
    hconfig = HypercornConfig()
    hconfig.bind = [f"{config.api_host}:{config.api_port}"]
    hconfig.accesslog = None  # our own request log is JSON and carries the request id
    if quiet:
        hconfig.errorlog = None
    hconfig.graceful_timeout = GRACEFUL_TIMEOUT_S
    hconfig.websocket_max_message_size = WEBSOCKET_MAX_MESSAGE_BYTES
    return hconfig


def guarded(app: ASGIApp, max_message_bytes: int = WEBSOCKET_MAX_MESSAGE_BYTES) -> ASGIApp:
    """`app` with WebSocket refusals sent whole and incoming messages capped (see above)."""

    async def guarded_app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await app(scope, receive, send)
            return
        start: Message | None = None
        body: list[bytes] = []
        closed = False

        async def send_whole(message: Message) -> None:
            nonlocal start, closed
            kind = message["type"]
            if kind == "websocket.http.response.start":
                start = message
                return
            if kind == "websocket.http.response.body":
                body.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                if start is not None:
                    await send(start)
                    start = None
                joined = b"".join(body)
                body.clear()
                await send({"type": kind, "body": joined, "more_body": False})
                return
            if kind == "websocket.close":
                if closed:
                    return
                closed = True
            await send(message)

        async def receive_capped() -> Message:
            message = await receive()
            if message["type"] == "websocket.receive":
                data = message.get("bytes")
                text = message.get("text")
                size = len(data) if data is not None else len(text or "")
                # Characters are a lower bound of bytes: check the encoded size near the cap.
                if text is not None and size * 4 > max_message_bytes:
                    size = len(text.encode("utf-8", "surrogatepass"))
                if size > max_message_bytes:
                    await send_whole({"type": "websocket.close", "code": 1009})
                    return {"type": "websocket.disconnect", "code": 1009}
            return message

        await app(scope, receive_capped, send_whole)

    return guarded_app


def create() -> ASGIApp:
    """The app for servers that import it in each worker (Granian, uvicorn): configured from
    the environment, as `vaporform api` is."""
    from vaporform import logs
    from vaporform.config import load_config
    from web.app import create_app

    _die_with_parent()
    config = load_config()
    logs.configure(config.log_level)
    return guarded(create_app(config))


def _die_with_parent() -> None:
    """A worker process goes when `vaporform api` goes, even by SIGKILL, as one process did
    (otherwise an orphaned worker keeps serving on the port)."""
    if sys.platform != "linux":
        return
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def serve_granian(config: Config, workers: int) -> None:
    """Blocks until SIGINT/SIGTERM; Granian runs lifespan in every worker."""
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels
    from granian.server import Server

    Server(
        "web.serving:create",
        address=config.api_host,
        port=config.api_port,
        interface=Interfaces.ASGI,
        workers=workers,
        loop=Loops.uvloop,
        websockets=True,
        factory=True,
        log_access=False,
        log_level=LogLevels.warning,
        workers_kill_timeout=GRACEFUL_TIMEOUT_S + 5,
    ).serve()


def uvicorn_config(app: ASGIApp | str, config: Config, workers: int = 1) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        factory=isinstance(app, str),
        host=config.api_host,
        port=config.api_port,
        workers=workers,
        loop="uvloop",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        ws_max_size=WEBSOCKET_MAX_MESSAGE_BYTES,
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=GRACEFUL_TIMEOUT_S,
    )


def serve_uvicorn(config: Config, workers: int) -> None:
    import uvicorn
    from uvicorn.supervisors.multiprocess import Multiprocess

    found = uvicorn_config("web.serving:create", config, workers)
    if workers == 1:
        uvicorn.Server(found).run()
    else:
        sock = found.bind_socket()
        Multiprocess(found, sockets=[sock]).run()


async def serve_in_process(app: ASGIApp, config: Config, stop: asyncio.Event) -> None:
    """The server `VAPORFORM_SERVER` names, in this process and event loop until `stop` is
    set (the tests' servers)."""
    name = server_name()
    if name == "hypercorn":
        from hypercorn.asyncio import serve

        await serve(guarded(app), hypercorn_config(config, quiet=True), shutdown_trigger=stop.wait)
        return
    if name == "uvicorn":
        import uvicorn

        userver = uvicorn.Server(uvicorn_config(app, config))
        task = asyncio.ensure_future(userver.serve())
        await stop.wait()
        userver.should_exit = True
        await task
        return
    from granian.constants import Interfaces
    from granian.server.embed import Server

    server = Server(
        guarded(app),
        address=config.api_host,
        port=config.api_port,
        interface=Interfaces.ASGI,
        websockets=True,
        log_enabled=False,
    )
    serving = asyncio.ensure_future(server.serve())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not serving.done():
            server.stop()  # type: ignore[no-untyped-call]
        await serving
