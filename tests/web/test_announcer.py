"""The announcer paces the "files changed" signals: one per project per interval, the changes
that came meanwhile all in the next one, and nothing pending lost when the API stops.

`send` is the announcer's boundary (in the app, a signal-with-start to Temporal, which
tests/files covers end to end); here it records what it was handed."""

from __future__ import annotations

from uuid import UUID, uuid4

from files.model import ChangeEvent
from tests.support import wait_until
from web.announcer import Announcer

Sent = list[tuple[str, list[str], str]]


def change(project: UUID, *paths: str, origin: str = "api") -> ChangeEvent:
    return ChangeEvent(project_id=project, paths=paths, origin=origin)


async def started(sent: Sent, *, interval: float) -> Announcer:
    async def send(project_id: str, paths: list[str], origin: str) -> None:
        sent.append((project_id, paths, origin))

    announcer = Announcer(send, interval=interval)
    announcer.start()
    return announcer


async def test_a_burst_costs_one_signal_now_and_one_for_the_rest() -> None:
    sent: Sent = []
    announcer = await started(sent, interval=3600)
    project = uuid4()
    await announcer(change(project, "a.py"))

    async def first_sent() -> bool:
        return len(sent) == 1

    await wait_until(first_sent, what="the first change signalled at once")
    for i in range(50):
        await announcer(change(project, f"f{i}.py"))
    await announcer(change(project, "w.py", origin="workspace"))
    # Still within the interval: held back, and nothing lost when the API stops.
    assert sent == [(str(project), ["a.py"], "api")]
    await announcer.close()
    assert sent[0] == (str(project), ["a.py"], "api")
    assert sorted(sent[1:]) == [
        (str(project), sorted(f"f{i}.py" for i in range(50)), "api"),
        (str(project), ["w.py"], "workspace"),
    ]


async def test_changes_after_the_interval_are_signalled() -> None:
    sent: Sent = []
    announcer = await started(sent, interval=0.05)
    project = uuid4()
    await announcer(change(project, "a.py"))
    await announcer(change(project, "b.py"))
    await announcer(change(project, "c.py"))

    async def all_sent() -> bool:
        return sorted(p for _, paths, _ in sent for p in paths) == ["a.py", "b.py", "c.py"]

    # Without a close: the held changes leave once the interval is over.
    await wait_until(all_sent, what="the held changes signalled after the interval")
    await announcer.close()
    assert len(sent) <= 3


async def test_one_project_does_not_hold_back_another() -> None:
    sent: Sent = []
    announcer = await started(sent, interval=3600)
    busy, other = uuid4(), uuid4()
    await announcer(change(busy, "a.py"))

    async def busy_sent() -> bool:
        return len(sent) == 1

    await wait_until(busy_sent, what="the busy project's first signal")
    await announcer(change(busy, "b.py"))
    await announcer(change(other, "x.py"))

    async def other_sent() -> bool:
        return (str(other), ["x.py"], "api") in sent

    await wait_until(other_sent, what="the other project's signal")
    assert (str(busy), ["b.py"], "api") not in sent
    await announcer.close()
    assert sent[-1] == (str(busy), ["b.py"], "api")
