"""Heartbeats for async activities whose work is one long await (materialising a workspace,
waiting for a workflow to end): a Temporal worker that dies mid-way is noticed within the
heartbeat timeout, and a cancellation reaches the activity."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from temporalio import activity


@contextlib.asynccontextmanager
async def beating(every_s: float = 0.5) -> AsyncIterator[None]:
    """Heartbeat every `every_s` seconds while the block runs."""

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every_s)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
