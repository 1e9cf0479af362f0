"""WebSocket handlers that read the server's message stream themselves.

Quart reads every incoming message in a task of its own, fires a signal and hands the message
to the handler through a queue: per message a task switch, two queue operations and a
coroutine. At thousands of ops a second that is a measurable share of the API's time for
nothing the app uses. With `DirectReads` as the app's `asgi_websocket_class`, a handler's
`websocket.receive()` takes the next message straight from the server; Quart's own reader only
waits until a read has met the client's disconnect, and then cancels the handler as before.

What changes for a handler: a disconnect is noticed by its next read (every socket of the API
reads all the time), and Quart's `websocket_received` signal is not sent (nothing listens).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from quart.asgi import ASGIWebsocketConnection

from web.telemetry import Receive


class _Stream:
    """Stands in for Quart's message queue: `get` is the next message from the server."""

    def __init__(self, receive: Receive, left: asyncio.Future[None]) -> None:
        self._receive = receive
        self._left = left

    async def get(self) -> str | bytes:
        while True:
            event = await self._receive()
            kind = event["type"]
            if kind == "websocket.receive":
                # As Quart: bytes when the frame was binary, else the text.
                return cast("str | bytes", event.get("bytes") or event["text"])
            if kind == "websocket.disconnect":
                if not self._left.done():
                    self._left.set_result(None)
                # Quart cancels the handler, this read included, once its reader has ended.
                await asyncio.get_running_loop().create_future()
            # "websocket.connect" (the first event): nothing for the handler.


class DirectReads(ASGIWebsocketConnection):
    """Quart's WebSocket connection, with the handler's reads going straight to the server."""

    async def __call__(self, receive: Any, send: Any) -> None:
        self._left: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Quart hands `self.queue.get` to the Websocket it builds in `super().__call__`.
        self.queue = cast(asyncio.Queue[Any], _Stream(receive, self._left))
        await super().__call__(receive, send)

    async def handle_messages(self, receive: Any) -> None:
        await self._left
