"""A minimal keep-alive HTTP/1.1 client for load generation.

httpx costs a few hundred microseconds of CPU per request; on a 2-core machine that shares
its cores with the server, the generator would then measure itself. This client does only
what the benchmarks need: one request at a time per connection, Content-Length or chunked
bodies, JSON in and out.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str):
        self._reader, self._writer, self._host = reader, writer, host

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        json_body: Any = None,
    ) -> tuple[int, bytes]:
        if json_body is not None:
            body = json.dumps(json_body).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}"]
        for key, value in (headers or {}).items():
            lines.append(f"{key}: {value}")
        if body is not None:
            if json_body is not None:
                lines.append("Content-Type: application/json")
            lines.append(f"Content-Length: {len(body)}")
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        status_line = await self._reader.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        length, chunked = 0, False
        while (line := await self._reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, await self._reader.readexactly(length)
        parts = []
        while size := int((await self._reader.readuntil(b"\r\n")).strip(), 16):
            parts.append(await self._reader.readexactly(size))
            await self._reader.readexactly(2)
        await self._reader.readuntil(b"\r\n")
        return status, b"".join(parts)

    def close(self) -> None:
        self._writer.close()


class ConnectionPool:
    """`size` persistent connections handed out one request at a time."""

    def __init__(self, base_url: str, size: int) -> None:
        parts = urlsplit(base_url)
        self._host, self._port, self._size = parts.hostname or "127.0.0.1", parts.port or 80, size
        self._idle: asyncio.Queue[Connection] = asyncio.Queue()
        self._all: list[Connection] = []

    async def _connect(self) -> Connection:
        reader, writer = await asyncio.open_connection(self._host, self._port)
        conn = Connection(reader, writer, f"{self._host}:{self._port}")
        self._all.append(conn)
        return conn

    async def open(self) -> None:
        for _ in range(self._size):
            self._idle.put_nowait(await self._connect())

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, bytes]:
        conn = await self._idle.get()
        try:
            return await conn.request(method, path, **kwargs)
        except (asyncio.IncompleteReadError, ConnectionResetError):
            # The server closed a keep-alive connection that sat idle: one retry on a new one.
            conn.close()
            conn = await self._connect()
            return await conn.request(method, path, **kwargs)
        finally:
            self._idle.put_nowait(conn)

    def close(self) -> None:
        for conn in self._all:
            conn.close()
