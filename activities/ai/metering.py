"""`BudgetMeter`: the provider port's `Meter` for one attempt of one `ai_ask` step.

Every model call gets a key of its own, `<job>:<step>#<attempt>.<n>`, so a call billed by an
attempt that later failed stays recorded when Temporal retries the step. Before the call its
worst-case cost is reserved (`store.ai_budget.reserve`); once billed, its usage row replaces
the reservation in one transaction; a call that was never billed (an error status, a
connection refused) releases it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

import asyncpg

from activities.ai.provider import Bill, ProviderError, ProviderUsage
from store import ai as usage_store
from store import ai_budget
from store.ai_budget import Budgets
from store.db import Conn
from vaporform import metrics
from workflows.ai.contract import JobRef

log = logging.getLogger("vaporform.ai")


class BudgetMeter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        budgets: Budgets,
        job: JobRef,
        step_key: str,
        attempt: int,
        model: str,
        ttl_s: float,
    ) -> None:
        self._pool = pool
        self._budgets = budgets
        self._job_id = UUID(job.job_id)
        self._project_id = UUID(job.project_id)
        self._user_id = UUID(job.user_id) if job.user_id else None
        self._step_key = step_key
        self._kind = job.kind
        self._attempt = attempt
        self._model = model
        self._ttl_s = ttl_s
        self._calls = 0

    async def release_earlier_attempts(self) -> None:
        """An earlier attempt of this step is over (it failed, or its worker died): what it
        still holds is no longer in flight."""
        async with self._pool.acquire() as conn:
            released = await ai_budget.release_step(conn, self._job_id, self._step_key)
        if released:
            log.info(
                "released reservations of an earlier attempt",
                extra={"step": self._step_key, "released": released},
            )

    @asynccontextmanager
    async def call(self, estimate_usd: float) -> AsyncIterator[Bill]:
        self._calls += 1
        key = f"{self._step_key}#{self._attempt}.{self._calls}"
        async with self._pool.acquire() as conn:
            refused = await ai_budget.reserve(
                conn,
                call_key=key,
                job_id=self._job_id,
                project_id=self._project_id,
                user_id=self._user_id,
                amount_usd=estimate_usd,
                budgets=self._budgets,
                ttl_s=self._ttl_s,
            )
        if refused is not None:
            metrics.AI_BUDGET_REFUSALS.labels(self._kind).inc()
            raise ProviderError(refused.message(), "budget_exceeded", details=refused.details())
        billed: list[ProviderUsage] = []
        try:
            yield billed.append
        finally:
            if billed:
                async with self._pool.acquire() as conn:
                    await self._record(conn, key, billed[-1])
                self._count(billed[-1])
            else:
                try:
                    async with self._pool.acquire() as conn:
                        await ai_budget.release(conn, key)
                except Exception:  # it stops counting at its expiry or the step's retry
                    log.exception("could not release a reservation", extra={"call_key": key})

    def _count(self, usage: ProviderUsage) -> None:
        model, kind = self._model, self._kind
        metrics.AI_CALLS.labels(model, kind).inc(usage.calls)
        metrics.AI_COST.labels(model, kind).inc(usage.cost_usd)
        for name, tokens in (
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
            ("cache_creation", usage.cache_creation_tokens),
            ("cache_read", usage.cache_read_tokens),
        ):
            metrics.AI_TOKENS.labels(model, kind, name).inc(tokens)

    async def _record(self, conn: Conn, key: str, usage: ProviderUsage) -> None:
        async with conn.transaction():
            await usage_store.record_usage(
                conn,
                call_key=key,
                job_id=self._job_id,
                project_id=self._project_id,
                user_id=self._user_id,
                model=self._model,
                calls=usage.calls,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_creation_tokens=usage.cache_creation_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cost_usd=usage.cost_usd,
                cached=False,
            )
            await ai_budget.release(conn, key)
