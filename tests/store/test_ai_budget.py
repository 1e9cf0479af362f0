"""Budget reservations on the real database: racing reservers, expiry, release, strictness."""

from __future__ import annotations

import asyncio
import uuid

from store import ai_budget, db
from store.ai_budget import Budgets


async def _reserve(
    database_url: str,
    project_id: uuid.UUID,
    user_id: uuid.UUID | None,
    amount: float,
    budgets: Budgets,
    *,
    key: str | None = None,
    job_id: uuid.UUID | None = None,
    ttl_s: float = 600,
    together: asyncio.Barrier | None = None,
) -> ai_budget.Refusal | None:
    conn = await db.connect(database_url)
    try:
        if together is not None:  # every racer holds its connection before any reserves
            await together.wait()
        return await ai_budget.reserve(
            conn,
            call_key=key or uuid.uuid4().hex,
            job_id=job_id,
            project_id=project_id,
            user_id=user_id,
            amount_usd=amount,
            budgets=budgets,
            ttl_s=ttl_s,
        )
    finally:
        await conn.close()


async def test_racing_reservations_never_overshoot(database_url: str) -> None:
    project_id, user_id = uuid.uuid4(), uuid.uuid4()
    together = asyncio.Barrier(8)
    outcomes = await asyncio.gather(
        *(
            _reserve(database_url, project_id, user_id, 0.6, Budgets(1.0, 100.0), together=together)
            for _ in range(8)
        )
    )
    assert sum(o is None for o in outcomes) == 1
    refusals = [o for o in outcomes if o is not None]
    assert {r.scope for r in refusals} == {"project"}
    assert all(r.reserved_usd == 0.6 for r in refusals)


async def test_a_user_budget_spans_projects(database_url: str) -> None:
    user_id = uuid.uuid4()
    budgets = Budgets(100.0, 1.0)
    together = asyncio.Barrier(6)
    outcomes = await asyncio.gather(
        *(
            _reserve(database_url, uuid.uuid4(), user_id, 0.4, budgets, together=together)
            for _ in range(6)
        )
    )
    assert sum(o is None for o in outcomes) == 2  # 0.8 of 1.0; a third would make 1.2
    assert {o.scope for o in outcomes if o is not None} == {"user"}


async def test_expired_and_released_reservations_stop_counting(database_url: str) -> None:
    project_id, job_id = uuid.uuid4(), uuid.uuid4()
    budgets = Budgets(1.0, 1.0)
    # A crashed call's reservation: expired, it no longer stands in anyone's way.
    assert await _reserve(database_url, project_id, None, 0.9, budgets, ttl_s=0) is None
    assert await _reserve(database_url, project_id, None, 0.9, budgets, key="a#1.1") is None
    refused = await _reserve(database_url, project_id, None, 0.2, budgets)
    assert refused is not None
    assert refused.reserved_usd == 0.9
    # A retried step releases what its earlier attempts still hold.
    step = f"{job_id}:review"
    assert (
        await _reserve(database_url, project_id, None, 0.5, budgets, key=f"{step}#1.1") is not None
    )
    conn = await db.connect(database_url)
    try:
        await ai_budget.release(conn, "a#1.1")
        assert (
            await _reserve(
                database_url, project_id, None, 0.7, budgets, key=f"{step}#1.1", job_id=job_id
            )
            is None
        )
        assert await ai_budget.release_step(conn, job_id, step) == 1
        assert await ai_budget.over_budget(conn, project_id, None, budgets) is None
        # Re-reserving under the same key replaces the amount rather than adding to it.
        for amount in (0.6, 0.8, 1.0):
            assert await _reserve(database_url, project_id, None, amount, budgets, key="k") is None
        # Spent + reserved at the budget: the API's check refuses a new job.
        full = await ai_budget.over_budget(conn, project_id, None, budgets)
        assert full is not None
        assert full.reserved_usd == 1.0
        assert await ai_budget.over_budget(conn, project_id, None, Budgets(0.0, 1.0)) is not None
    finally:
        await conn.close()
