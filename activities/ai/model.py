"""The model step of a job (`ai_ask`): answered from the cache when the same request was
answered before, else by the provider, every call within the budgets (`BudgetMeter`)."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import timedelta
from uuid import UUID

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.ai.metering import BudgetMeter
from activities.ai.prompts import PROMPT_VERSION
from activities.ai.provider import Provider, ProviderError, ProviderRequest
from store import ai as store
from store import ai_budget
from store.ai_budget import Budgets
from store.db import Conn
from vaporform import metrics
from workflows.ai.contract import AskInput, AskOutput, JobRef
from workflows.ai.errors import (
    BUDGET_EXCEEDED,
    INVALID_ANSWER,
    PROVIDER_NOT_CONFIGURED,
    PROVIDER_REJECTED,
    PROVIDER_RETRYABLE,
)

_ERRORS = {
    "retryable": PROVIDER_RETRYABLE,
    "rejected": PROVIDER_REJECTED,
    "not_configured": PROVIDER_NOT_CONFIGURED,
    "invalid_answer": INVALID_ANSWER,
    "budget_exceeded": BUDGET_EXCEEDED,
}
# A reservation outlives its call's longest possible attempt by this much (then it expires).
RESERVATION_MARGIN = timedelta(minutes=1)
DEFAULT_ASK_TIMEOUT = timedelta(minutes=10)


def input_hash(provider: Provider, data: AskInput) -> str:
    key = {
        "provider": provider.name,
        "model": provider.model,
        "prompt": PROMPT_VERSION,
        "task": data.task,
        "files": [[f.path, hashlib.sha256(f.content.encode()).hexdigest()] for f in data.files],
        "payload": data.payload,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


class ModelActivities:
    def __init__(self, pool: asyncpg.Pool, provider: Provider, budgets: Budgets) -> None:
        self._pool = pool
        self._provider = provider
        self._budgets = budgets

    @activity.defn(name="ai_ask")
    async def ask(self, data: AskInput) -> AskOutput:
        """One step of a job: from the cache when the same request was answered before, else
        from the provider, each model call within the budgets (`BudgetMeter`).

        A step that a retried activity finds in the cache after an earlier attempt paid for
        it records nothing more: it neither pays twice nor counts twice."""
        provider = self._provider
        key = input_hash(provider, data)
        job_id = UUID(data.job.job_id)
        step_key = f"{data.job.job_id}:{data.step}"
        info = activity.info()
        async with self._pool.acquire() as conn:
            cached = await store.cached_answer(conn, key)
            if cached is not None:
                if not await ai_budget.step_billed(conn, job_id, step_key):
                    await _record_unbilled(conn, step_key, data.job, provider.model, cached=True)
                metrics.AI_STEPS.labels(provider.model, data.job.kind, "cached").inc()
                return AskOutput(answer=cached, cached=True, calls=0)
        meter = BudgetMeter(
            self._pool,
            self._budgets,
            data.job,
            step_key,
            info.attempt,
            provider.model,
            ttl_s=(
                (info.start_to_close_timeout or DEFAULT_ASK_TIMEOUT) + RESERVATION_MARGIN
            ).total_seconds(),
        )
        if info.attempt > 1:
            await meter.release_earlier_attempts()
        began = time.perf_counter()
        try:
            got = await provider.ask(
                ProviderRequest(task=data.task, files=data.files, payload=data.payload),
                activity.heartbeat,
                meter,
            )
        except ProviderError as exc:
            metrics.AI_STEPS.labels(provider.model, data.job.kind, "failed").inc()
            raise ApplicationError(
                exc.message,
                *([exc.details] if exc.details else []),
                type=_ERRORS.get(exc.kind, PROVIDER_REJECTED),
                non_retryable=exc.kind != "retryable",
                next_retry_delay=None if exc.retry_after_s is None else _delay(exc.retry_after_s),
            ) from None
        metrics.AI_STEPS.labels(provider.model, data.job.kind, "answered").inc()
        metrics.AI_STEP_DURATION.labels(provider.model, data.job.kind).observe(
            time.perf_counter() - began
        )
        usage = got.usage
        async with self._pool.acquire() as conn:
            if usage.calls:  # bought answers are cached; their calls are metered already
                await store.store_answer(conn, key, provider.model, got.answer)
            else:  # offline answers are computed, not bought: a row of zeros, as a record
                await _record_unbilled(conn, step_key, data.job, provider.model, cached=False)
        return AskOutput(
            answer=got.answer,
            cached=False,
            calls=usage.calls,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
        )


async def _record_unbilled(
    conn: Conn, call_key: str, job: JobRef, model: str, *, cached: bool
) -> None:
    """A row of zeros, as a record of a step answered without a bought call (from the cache,
    or computed by the offline provider); the calls that were bought are metered already."""
    await store.record_usage(
        conn,
        call_key=call_key,
        job_id=UUID(job.job_id),
        project_id=UUID(job.project_id),
        user_id=UUID(job.user_id) if job.user_id else None,
        model=model,
        calls=0,
        input_tokens=0,
        output_tokens=0,
        cache_creation_tokens=0,
        cache_read_tokens=0,
        cost_usd=0.0,
        cached=cached,
    )


def _delay(seconds: float) -> timedelta:
    # Zero would mean "use the policy"; the server asked for now, so wait the least we can.
    return timedelta(seconds=max(seconds, 0.1))
