"""Streaming HTTP and WebSocket relays, used twice on a preview's way: by the preview origin
(browser -> agent) and by the agent (agent -> the container's published port).

Bodies stream in both directions, never buffered whole; hop-by-hop headers (RFC 9110 7.6.1,
and whatever `Connection` names) are dropped at each hop; sizes and times are capped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from hypercorn.config import Config as HypercornConfig
from quart import Response, request, websocket
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Request headers of the WebSocket handshake itself: the next hop makes its own.
WEBSOCKET_HANDSHAKE = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-accept",
        "sec-websocket-protocol",
        "host",
        "content-length",
    }
)
BODYLESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "TRACE"})


class TooLarge(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int
    max_response_bytes: int
    timeout_s: float
    max_websocket_message_bytes: int


def end_to_end(
    headers: Iterable[tuple[str, str]], drop: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """`headers` without hop-by-hop ones, those `Connection` names, and `drop`."""
    pairs = list(headers)
    named = {
        token.strip().lower()
        for key, value in pairs
        if key.lower() == "connection"
        for token in value.split(",")
    }
    refused = HOP_BY_HOP | named | {d.lower() for d in drop}
    return [(key, value) for key, value in pairs if key.lower() not in refused]


def http_client(limits: Limits) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(limits.timeout_s, connect=min(limits.timeout_s, 10.0)),
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        follow_redirects=False,
        trust_env=False,
    )


async def _request_body(limit: int) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in request.body:
        seen += len(chunk)
        if seen > limit:
            raise TooLarge
        yield chunk


def _request_has_body() -> bool:
    headers = request.headers
    if "transfer-encoding" in headers:
        return True
    length = headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return request.method not in BODYLESS


async def relay_http(
    client: httpx.AsyncClient,
    url: str,
    limits: Limits,
    *,
    drop: Iterable[str] = (),
    add: Iterable[tuple[str, str]] = (),
) -> Response:
    """Send the current request on to `url` and answer with what comes back, streamed."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limits.max_body_bytes:
        return Response("request body too large\n", 413, content_type="text/plain")
    headers = end_to_end(request.headers.items(), ("host", *drop)) + list(add)
    body = _request_body(limits.max_body_bytes) if _request_has_body() else None
    upstream_request = client.build_request(request.method, url, headers=headers, content=body)
    try:
        upstream = await client.send(upstream_request, stream=True)
    except TooLarge:
        return Response("request body too large\n", 413, content_type="text/plain")
    except httpx.TimeoutException:
        return Response("the preview did not answer in time\n", 504, content_type="text/plain")
    except httpx.TransportError:
        return Response("the preview is not answering\n", 502, content_type="text/plain")

    async def stream() -> AsyncIterator[bytes]:
        sent = 0
        try:
            async for chunk in upstream.aiter_raw():
                sent += len(chunk)
                if sent > limits.max_response_bytes:
                    return  # cut short: the client sees an incomplete body
                yield chunk
        except httpx.HTTPError:
            return
        finally:
            await upstream.aclose()

    answer = Response(stream(), upstream.status_code)
    answer.headers.clear()
    for key, value in end_to_end(upstream.headers.multi_items()):
        answer.headers.add(key, value)
    return answer


def handshake_headers(drop: Iterable[str] = ()) -> list[tuple[str, str]]:
    """The current WebSocket handshake's end-to-end headers, for the next hop's handshake."""
    return end_to_end(websocket.headers.items(), (*WEBSOCKET_HANDSHAKE, *drop))


def _sendable(code: int | None) -> int:
    if code is None or code in (1005, 1006, 1015):
        return 1000 if code == 1005 else 1011
    return code


async def pump_websocket(upstream: ClientConnection) -> None:
    """Frames both ways between the accepted `websocket` and `upstream` until either ends;
    the end (code and reason) is passed on."""

    async def down() -> None:
        async for message in upstream:
            await websocket.send(message)

    async def up() -> None:
        while True:
            message: Any = await websocket.receive()
            await upstream.send(message)

    tasks = [asyncio.ensure_future(down()), asyncio.ensure_future(up())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        code, reason = upstream.close_code, upstream.close_reason or ""
        with contextlib.suppress(ConnectionClosed, Exception):
            await upstream.close()
        if code is not None:
            with contextlib.suppress(Exception):
                await websocket.close(_sendable(code), reason[:120])


def proxy_server_config(
    bind: str, max_websocket_message_bytes: int, *, quiet: bool = False
) -> HypercornConfig:
    """The server settings of a proxying listener (the agent, the preview origin): no access
    log, a short graceful stop, the WebSocket message cap of what it relays."""
    hconfig = HypercornConfig()
    hconfig.bind = [bind]
    hconfig.accesslog = None
    if quiet:
        hconfig.errorlog = None
    hconfig.graceful_timeout = 5
    hconfig.websocket_max_message_size = max_websocket_message_bytes
    return hconfig
