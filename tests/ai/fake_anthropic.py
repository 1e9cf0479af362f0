"""A fake Anthropic Messages API over real HTTP, so the real SDK (httpx2) talks to it.

`POST /v1/messages` answers from a script: each request takes the next scripted `Reply`
(a text answer, or an error status with headers); with the script empty it answers
`default`. Streaming requests (`"stream": true`) get Server-Sent Events in the API's order.
Every request is logged with its JSON body and headers. A reply with `hold` set is logged at
once and answered when the event is set, so a test can keep a call in flight.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig
from quart import Quart, Response, request

from tests.conftest import free_port


@dataclass
class Reply:
    text: str = "{}"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    error_type: str = "api_error"
    error_message: str = "scripted error"
    input_tokens: int = 1000
    output_tokens: int = 200
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0
    stop_reason: str = "end_turn"
    hold: asyncio.Event | None = None
    # Streamed answers: after this many text deltas, an `error` event (`error_type`) ends the
    # stream, as the API does when it is overloaded mid-answer.
    error_after_deltas: int | None = None


@dataclass
class Logged:
    body: dict[str, Any]
    headers: dict[str, str]
    reply: Reply


class FakeAnthropic:
    def __init__(self) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.script: list[Reply] = []
        self.default = Reply(text='{"findings": []}')
        self.log: list[Logged] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.app = self._make_app()

    def push(self, *replies: Reply) -> None:
        self.script.extend(replies)

    def reset(self) -> None:
        self.script.clear()
        self.log.clear()

    def _make_app(self) -> Quart:
        app = Quart("fake-anthropic")

        @app.post("/v1/messages")
        async def messages() -> Response:
            body = await request.get_json()
            reply = self.script.pop(0) if self.script else self.default
            headers = {k.lower(): v for k, v in request.headers.items()}
            self.log.append(Logged(body, headers, reply))
            if reply.hold is not None:
                await reply.hold.wait()
            if reply.status != 200:
                payload = {
                    "type": "error",
                    "error": {"type": reply.error_type, "message": reply.error_message},
                }
                return Response(
                    json.dumps(payload),
                    status=reply.status,
                    headers={"content-type": "application/json", **reply.headers},
                )
            message = _message(body, reply)
            if body.get("stream"):
                return Response(_sse(message, reply), headers={"content-type": "text/event-stream"})
            return Response(json.dumps(message), headers={"content-type": "application/json"})

        return app

    async def start(self) -> None:
        config = HypercornConfig()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.accesslog = None
        config.errorlog = None
        self._task = asyncio.create_task(serve(self.app, config, shutdown_trigger=self._stop.wait))
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                await writer.wait_closed()
                return
            except OSError:
                await asyncio.sleep(0.02)
        raise RuntimeError("the fake Anthropic server did not start")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


def _usage(reply: Reply) -> dict[str, int]:
    return {
        "input_tokens": reply.input_tokens,
        "output_tokens": reply.output_tokens,
        "cache_creation_input_tokens": reply.cache_creation_tokens,
        "cache_read_input_tokens": reply.cache_read_tokens,
    }


def _message(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "claude-test"),
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": _usage(reply),
    }


async def _sse(message: dict[str, Any], reply: Reply) -> Any:
    def event(name: str, data: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()

    start = {**message, "content": [], "stop_reason": None}
    start["usage"] = {**_usage(reply), "output_tokens": 1}
    yield event("message_start", {"message": start})
    yield event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    text = reply.text
    for number, offset in enumerate(range(0, len(text), 64)):
        if number == reply.error_after_deltas:
            error = {"type": reply.error_type, "message": reply.error_message}
            yield event("error", {"error": error})
            return
        delta = {"type": "text_delta", "text": text[offset : offset + 64]}
        yield event("content_block_delta", {"index": 0, "delta": delta})
    yield event("content_block_stop", {"index": 0})
    yield event(
        "message_delta",
        {
            "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": reply.output_tokens},
        },
    )
    yield event("message_stop", {})
