"""WebSocket handlers that read the server's message stream themselves.

Quart reads every incoming message in a task of its own, fires a signal and hands the message
to the handler through a queue: per message a task switch, two queue operations and a
coroutine. At thousands of ops a second that is a measurable share of the API's time for
nothing the app uses. With `DirectReads` as the app's `asgi_websocket_class`, a handler's
`websocket.receive()` takes the next message straight from the server; Quart's own reader only
waits until a read has met the client's disconnect, and then cancels the handler as before.

What changes for a handler: a disconnect is noticed by its next read (every socket of the API
reads all the time), and Quart's `websocket_received` signal is not sent (nothing listens).

A handler that has accepted may go one step further with `reader()`: its reads then skip
Quart's `websocket.receive` too (two more coroutines per message, with the accept check it
no longer needs). Every coroutine in the chain of a read stays alive, a young object for the
cyclic collector, for as long as its socket waits, and a thousand sockets always wait.
Frames in are counted here (`vaporform_ws_frames_total`), once the socket is accepted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, cast

from quart.asgi import ASGIWebsocketConnection

from web.telemetry import Receive, frames_in


class _Stream:
    """Stands in for Quart's message queue: `get` is the next message from the server."""

    def __init__(self, receive: Receive, left: asyncio.Future[None]) -> None:
        self._receive = receive
        self._left = left
        self._counted: Any = None

    async def get(self) -> str | bytes:
        while True:
            event = await self._receive()
            kind = event["type"]
            if kind == "websocket.receive":
                counted = self._counted
                if counted is None:
                    counted = self._counted = frames_in()
                if counted is not None:
                    counted.inc()
                # As Quart: bytes when the frame was binary, else the text.
                return cast("str | bytes", event.get("bytes") or event["text"])
            if kind == "websocket.disconnect":
                if not self._left.done():
                    self._left.set_result(None)
                # Quart cancels the handler, this read included, once its reader has ended.
                await asyncio.get_running_loop().create_future()
            # "websocket.connect" (the first event): nothing for the handler.


# The connection being served: the handler's task, which Quart starts in `__call__`, inherits it.
_stream: ContextVar[_Stream | None] = ContextVar("vaporform_socket_stream", default=None)


def reader() -> Callable[[], Awaitable[str | bytes]]:
    """For a handler that has accepted its WebSocket: the next message, read straight from the
    server (what `websocket.receive()` returns, without Quart's wrapping)."""
    stream = _stream.get()
    if stream is None:
        raise RuntimeError("reader() needs a WebSocket served through DirectReads")
    return stream.get


class DirectReads(ASGIWebsocketConnection):
    """Quart's WebSocket connection, with the handler's reads going straight to the server."""

    async def __call__(self, receive: Any, send: Any) -> None:
        self._left: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        stream = _Stream(receive, self._left)
        # Quart hands `self.queue.get` to the Websocket it builds in `super().__call__`.
        self.queue = cast(asyncio.Queue[Any], stream)
        token = _stream.set(stream)
        try:
            await super().__call__(receive, send)
        finally:
            _stream.reset(token)

    async def handle_messages(self, receive: Any) -> None:
        await self._left
