"""How the API is served: one ASGI server for `vaporform api`, the tests and the benchmarks.

`VAPORFORM_SERVER` picks it: `uvicorn` (the default: uvloop, `websockets-sansio`, deflate
off), `granian` (Rust HTTP and WebSocket framing, no permessage-deflate) or `hypercorn` (pure
Python, always offers deflate). Measured in bench/collab_results.md, once the collaboration
socket wrote its frames straight to the server: uvicorn and Granian are as fast as each
other within the box's noise, and 2,000 idle connections take 217 MB under uvicorn against
536 MB under Granian (which zero-fills a 128 KiB read buffer per WebSocket).
`vaporform api --workers N` (`VAPORFORM_API_WORKERS`) runs N processes on one port; they share
the Redis fan-out like API nodes on different hosts (set `REDIS_URL`).

What the app relies on from any of them, and where it is kept when a server lacks it:
lifespan (`before_serving` / `after_serving`), refusing a WebSocket with an HTTP response
before accepting it, a WebSocket message size cap, graceful shutdown, noticing dead peers.
`guarded` adapts the app: it hands Granian a refusal body in one piece (Quart streams it in
chunks, which Granian does not support) and closes with 1009 any WebSocket message over the
cap (Granian has no setting for it).

Dead peers: a client that only reads sends nothing, so silence says nothing about it; a peer
that vanished (network gone, laptop shut) acknowledges nothing, which only TCP sees. Granian
sends no WebSocket pings and an ASGI app cannot, so `guarded` also turns on TCP
keepalive and TCP_USER_TIMEOUT on the API's sockets (on Linux): a peer that acknowledges
nothing for `dead_peer_s` is dropped by the kernel, and the server reports the disconnect as
for any other. uvicorn also sends protocol pings and closes a connection that does not answer
them (hypercorn's pings would not: they only keep a connection's tasks from ending at shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from hypercorn.config import Config as HypercornConfig

from collab.settings import CollabSettings
from vaporform.config import Config

# The collaboration protocol's largest message is 256 KiB (collab/settings.py); a terminal
# frame is far smaller. Anything bigger closes the socket with 1009.
WEBSOCKET_MAX_MESSAGE_BYTES = 1024 * 1024
# Open connections get this long to finish when the server is asked to stop.
GRACEFUL_TIMEOUT_S = 5
SERVERS = ("granian", "uvicorn", "hypercorn")
DEFAULT_SERVER = "uvicorn"

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


def keep_alive_sockets(port: int, dead_peer_s: float) -> int:
    """Set TCP keepalive and TCP_USER_TIMEOUT on this process's TCP sockets bound to `port`:
    the listening ones, whose accepted connections inherit both (Linux), and those already
    accepted. Returns how many were set; 0 where the platform lacks the options."""
    if sys.platform != "linux" or not hasattr(socket, "TCP_USER_TIMEOUT"):
        return 0
    options = [
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        # Idle for half the bound, then three probes over the other half.
        (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, int(dead_peer_s / 2))),
        (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, int(dead_peer_s / 6))),
        (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3),
        # Data sent but not acknowledged (or a window kept shut) for this long drops the peer:
        # keepalive alone waits while there is unacknowledged data, up to ~15 minutes.
        (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, max(1, int(dead_peer_s * 1000))),
    ]
    done = 0
    # The servers make their sockets themselves (Granian in Rust): find them by their port.
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            found = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue  # closed meanwhile
        with found:
            try:
                if (
                    found.family not in (socket.AF_INET, socket.AF_INET6)
                    or found.type != socket.SOCK_STREAM
                    or found.getsockname()[1] != port
                ):
                    continue
                for level, option, value in options:
                    found.setsockopt(level, option, value)
                done += 1
            except OSError:
                continue
    return done


def detecting_dead_peers(app: ASGIApp, dead_peer_s: float) -> ASGIApp:
    """`app`, setting up `keep_alive_sockets` on the first request or WebSocket it serves (the
    listening socket exists by then; lifespan runs before Granian makes it). A connection
    still in the kernel's accept queue at that moment keeps the system's defaults: the
    keep-alive frames still end it when its peer is gone, after the kernel's retransmissions
    give up (about 15 minutes)."""
    ready = False

    async def detecting_app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal ready
        if not ready and scope["type"] in ("http", "websocket"):
            ready = True
            server = scope.get("server")
            if server is not None:
                # Granian gives the port as a string.
                keep_alive_sockets(int(server[1]), dead_peer_s)
        await app(scope, receive, send)

    return detecting_app


def guarded(
    app: ASGIApp,
    max_message_bytes: int = WEBSOCKET_MAX_MESSAGE_BYTES,
    dead_peer_s: float = CollabSettings().dead_peer_s,
) -> ASGIApp:
    """`app` with WebSocket refusals sent whole, incoming messages capped and dead peers
    dropped (see above)."""
    app = detecting_dead_peers(app, dead_peer_s)

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
    from web import gc_pauses
    from web.app import create_app

    _die_with_parent()
    config = load_config()
    logs.configure(config.log_level)
    built = create_app(config)
    dead_peer_s = config.collab.dead_peer_s
    # uvicorn sends refusals whole and caps messages itself (`ws_max_size`), as the tests'
    # servers run it (serve_in_process): each layer of `guarded` is one more coroutine for
    # every message in and every frame out.
    if server_name() == "uvicorn":
        app = detecting_dead_peers(built, dead_peer_s)
    else:
        app = guarded(built, dead_peer_s=dead_peer_s)
    gc_pauses.tune()
    return app


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
        ws_ping_interval=config.collab.keepalive_s,
        ws_ping_timeout=config.collab.dead_peer_s,
        lifespan="on",
        # Forwarded headers are the app's to judge (web/client_ip.py, VAPORFORM_TRUSTED_PROXIES):
        # uvicorn would otherwise trust X-Forwarded-For from any local peer.
        proxy_headers=False,
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
    dead_peer_s = config.collab.dead_peer_s
    if name == "hypercorn":
        from hypercorn.asyncio import serve

        await serve(
            guarded(app, dead_peer_s=dead_peer_s),
            hypercorn_config(config, quiet=True),
            shutdown_trigger=stop.wait,
        )
        return
    if name == "uvicorn":
        import uvicorn

        # uvicorn caps message sizes itself (`ws_max_size`).
        userver = uvicorn.Server(uvicorn_config(detecting_dead_peers(app, dead_peer_s), config))
        task = asyncio.ensure_future(userver.serve())
        await stop.wait()
        userver.should_exit = True
        await task
        return
    from granian.constants import Interfaces
    from granian.server.embed import Server

    server = Server(
        guarded(app, dead_peer_s=dead_peer_s),
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
