"""One conformance suite for both brokers (in-process and Redis pub/sub)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from collab.broker import Broker, MemoryBroker, MemoryHub, RedisBroker
from tests.conftest import REDIS_URL
from tests.support import wait_until

Factory = Callable[[], Broker]


@pytest.fixture(params=["memory", "redis"])
async def make_broker(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    """Brokers made by one factory see each other, like API nodes sharing Redis."""
    made: list[Broker] = []
    hub, prefix = MemoryHub(), f"vf-test-{uuid.uuid4().hex}:"

    def make() -> Broker:
        broker: Broker = (
            MemoryBroker(hub)
            if request.param == "memory"
            else RedisBroker(REDIS_URL, prefix=prefix)
        )
        made.append(broker)
        return broker

    yield make
    for broker in made:
        await broker.close()


def collector() -> tuple[list[bytes], Callable[[bytes], None]]:
    got: list[bytes] = []
    return got, got.append


async def test_delivers_in_order_to_every_subscriber_of_the_channel(make_broker: Factory) -> None:
    a, b = make_broker(), make_broker()
    got_a, on_a = collector()
    got_b, on_b = collector()
    got_other, on_other = collector()
    await a.subscribe("doc", on_a)
    await b.subscribe("doc", on_b)
    await b.subscribe("other", on_other)
    messages = [f"m{i}".encode() for i in range(200)]
    for message in messages:
        await a.publish("doc", message)

    async def both() -> bool:
        return len(got_a) == len(got_b) == len(messages)

    await wait_until(both, timeout=10, what="every message on both brokers")
    assert got_a == messages
    assert got_b == messages
    assert got_other == []


async def test_concurrent_publishes_arrive_in_the_order_of_the_calls(
    make_broker: Factory,
) -> None:
    """Publishers that do not wait for each other (the ops of many documents, forwarded
    ops, their answers) still reach every node in the order they published."""
    a, b = make_broker(), make_broker()
    got, on_message = collector()
    await b.subscribe("doc", on_message)
    messages = [f"m{i}".encode() for i in range(500)]
    await asyncio.gather(*(a.publish("doc", message) for message in messages))

    async def all_there() -> bool:
        return len(got) == len(messages)

    await wait_until(all_there, timeout=10, what="every message")
    assert got == messages


async def test_unsubscribe_stops_only_that_handler(make_broker: Factory) -> None:
    broker, publisher = make_broker(), make_broker()
    got_1, on_1 = collector()
    got_2, on_2 = collector()
    first = await broker.subscribe("c", on_1)
    await broker.subscribe("c", on_2)
    await publisher.publish("c", b"one")

    async def two_got_one() -> bool:
        return got_1 == [b"one"] and got_2 == [b"one"]

    await wait_until(two_got_one, what="the first message")
    await first.unsubscribe()
    await first.unsubscribe()  # idempotent
    await publisher.publish("c", b"two")

    async def second_got_two() -> bool:
        return got_2 == [b"one", b"two"]

    await wait_until(second_got_two, what="the second message")
    assert got_1 == [b"one"]


async def test_resubscribe_after_the_last_handler_left(make_broker: Factory) -> None:
    broker, publisher = make_broker(), make_broker()
    got, on = collector()
    subscription = await broker.subscribe("c", on)
    await subscription.unsubscribe()
    await publisher.publish("c", b"lost")
    await broker.subscribe("c", on)
    await publisher.publish("c", b"kept")

    async def kept() -> bool:
        return b"kept" in got

    await wait_until(kept, what="the message after resubscribing")
    assert got == [b"kept"]


async def test_a_failing_handler_does_not_stop_delivery(make_broker: Factory) -> None:
    broker = make_broker()
    got, on = collector()

    def boom(message: bytes) -> None:
        raise RuntimeError("handler bug")

    await broker.subscribe("c", boom)
    await broker.subscribe("c", on)
    await broker.publish("c", b"1")
    await broker.publish("c", b"2")

    async def both() -> bool:
        return got == [b"1", b"2"]

    await wait_until(both, what="delivery past a failing handler")


async def test_binary_payloads_survive(make_broker: Factory) -> None:
    broker = make_broker()
    got, on = collector()
    await broker.subscribe("bin", on)
    payload = bytes(range(256)) * 4
    await broker.publish("bin", payload)

    async def arrived() -> bool:
        return got == [payload]

    await wait_until(arrived, what="the binary payload")
