"""Fan-out of committed ops, presence, cursors and chat between API nodes.

A port with two implementations, both passing tests/collab/test_broker.py:

* ``MemoryBroker``: in-process, for one API node without Redis (brokers made from the same
  ``MemoryHub`` see each other, which is how the tests model several nodes);
* ``RedisBroker``: Redis pub/sub, one connection per process shared by every channel.

Delivery is at-most-once and ordered per channel and publisher, like Redis pub/sub: the
database, not the broker, is the source of truth, and receivers fill gaps from it.
Handlers are plain callables run on the event loop; they must not block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol, cast

from store.ephemeral import redis_client

log = logging.getLogger("vaporform.collab")

Handler = Callable[[bytes], None]


class Subscription(Protocol):
    async def unsubscribe(self) -> None: ...


class Broker(Protocol):
    async def publish(self, channel: str, message: bytes) -> None: ...

    async def subscribe(self, channel: str, handler: Handler) -> Subscription:
        """Deliver every message published on `channel` from now on to `handler`."""
        ...

    async def close(self) -> None: ...


class _Registry:
    """Handlers per channel; a subscription removes exactly the handler it added."""

    def __init__(self) -> None:
        self.handlers: dict[str, list[Handler]] = {}

    def add(self, channel: str, handler: Handler) -> bool:
        """Add; True when the channel had no handler before."""
        found = self.handlers.setdefault(channel, [])
        found.append(handler)
        return len(found) == 1

    def remove(self, channel: str, handler: Handler) -> bool:
        """Remove; True when the channel has no handler left."""
        found = self.handlers.get(channel)
        if not found or handler not in found:
            return False
        found.remove(handler)
        if not found:
            del self.handlers[channel]
            return True
        return False

    def dispatch(self, channel: str, message: bytes) -> None:
        for handler in list(self.handlers.get(channel, ())):
            try:
                handler(message)
            except Exception:
                log.exception("broker handler failed", extra={"channel": channel})


class _Subscription:
    def __init__(
        self, owner: _Registry, channel: str, handler: Handler, on_empty: _OnEmpty
    ) -> None:
        self._owner = owner
        self._channel = channel
        self._handler = handler
        self._on_empty = on_empty
        self._active = True

    async def unsubscribe(self) -> None:
        if not self._active:
            return
        self._active = False
        if self._owner.remove(self._channel, self._handler):
            await self._on_empty(self._channel)


class _OnEmpty(Protocol):
    async def __call__(self, channel: str) -> None: ...


class MemoryHub:
    """What in-process brokers share: publishing on one reaches subscribers of all."""

    def __init__(self) -> None:
        self.brokers: list[MemoryBroker] = []


class MemoryBroker:
    def __init__(self, hub: MemoryHub | None = None) -> None:
        self._hub = hub or MemoryHub()
        self._hub.brokers.append(self)
        self._registry = _Registry()
        # One queue keeps delivery asynchronous (as over Redis) and in publish order.
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def _deliver(self, channel: str, message: bytes) -> None:
        if channel in self._registry.handlers:
            self._queue.put_nowait((channel, message))
            if self._task is None:
                self._task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        while True:
            channel, message = await self._queue.get()
            self._registry.dispatch(channel, message)

    async def publish(self, channel: str, message: bytes) -> None:
        for broker in list(self._hub.brokers):
            broker._deliver(channel, message)

    async def subscribe(self, channel: str, handler: Handler) -> Subscription:
        self._registry.add(channel, handler)
        return _Subscription(self._registry, channel, handler, self._nothing)

    async def _nothing(self, channel: str) -> None:
        return None

    async def close(self) -> None:
        if self in self._hub.brokers:
            self._hub.brokers.remove(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._registry.handlers.clear()


class RedisBroker:
    def __init__(self, url: str, *, prefix: str = "vf:") -> None:
        self._redis = redis_client(url)
        self._prefix = prefix + "collab:"
        self._pubsub = self._redis.pubsub()
        self._registry = _Registry()
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._confirmed: dict[str, asyncio.Event] = {}
        self._outgoing: list[tuple[str, bytes, asyncio.Future[None]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def publish(self, channel: str, message: bytes) -> None:
        """Sent with whatever else is published meanwhile, as one pipeline in the order of
        the calls: a PUBLISH each through the client's pool was about 8% of each of two
        nodes' samples at 50 files x 4 writers, a round trip per op forwarded or committed.
        A caller cancelled while it waits does not take its message back."""
        sent = asyncio.get_running_loop().create_future()
        self._outgoing.append((self._prefix + channel, message, sent))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send())
        await sent

    async def _send(self) -> None:
        while self._outgoing:
            batch, self._outgoing = self._outgoing, []
            try:
                if len(batch) == 1:
                    await self._redis.publish(batch[0][0], batch[0][1])
                else:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for channel, message, _ in batch:
                            pipe.publish(channel, message)
                        await pipe.execute()
            except Exception as exc:
                for *_, sent in batch:
                    if not sent.done():
                        sent.set_exception(exc)
                continue
            for *_, sent in batch:
                if not sent.done():
                    sent.set_result(None)

    async def subscribe(self, channel: str, handler: Handler) -> Subscription:
        async with self._lock:
            if self._registry.add(channel, handler):
                confirmed = self._confirmed[channel] = asyncio.Event()
                try:
                    await self._pubsub.subscribe(self._prefix + channel)
                    if self._reader is None:
                        self._reader = asyncio.get_running_loop().create_task(self._read())
                    # Redis confirms SUBSCRIBE on the pub/sub connection itself; waiting for
                    # it means nothing published after this call returns can be missed.
                    await asyncio.wait_for(confirmed.wait(), timeout=10)
                except BaseException:
                    # Unreachable Redis: forget the handler, so that a retry subscribes again
                    # instead of finding the channel "already subscribed".
                    self._registry.remove(channel, handler)
                    self._confirmed.pop(channel, None)
                    raise
        return _Subscription(self._registry, channel, handler, self._drop)

    async def _drop(self, channel: str) -> None:
        async with self._lock:
            if channel not in self._registry.handlers:
                await self._pubsub.unsubscribe(self._prefix + channel)

    async def _read(self) -> None:
        cut = len(self._prefix)
        while True:
            try:
                # Blocking: a read with a timeout runs each message through a timeout
                # context of its own (3% of a node's time with two of them at load).
                message = await self._pubsub.get_message(timeout=None)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("redis pub/sub read failed; retrying")
                await asyncio.sleep(0.5)
                continue
            channel = None if message is None else message.get("channel")
            if message is None or channel is None:
                continue
            name = (channel.decode() if isinstance(channel, bytes) else str(channel))[cut:]
            if message["type"] == "message":
                self._registry.dispatch(name, message["data"])
            elif message["type"] == "subscribe" and name in self._confirmed:
                self._confirmed.pop(name).set()

    async def close(self) -> None:
        if self._sender is not None:
            with contextlib.suppress(Exception):
                await self._sender  # what was published before close still goes
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        self._registry.handlers.clear()
        # Through Any: redis 8.1 leaves aclose untyped, 8.2 types it.
        await cast(Any, self._pubsub).aclose()
        await self._redis.aclose()


def open_broker(redis_url: str | None, prefix: str = "vf:") -> Broker:
    return RedisBroker(redis_url, prefix=prefix) if redis_url else MemoryBroker()
