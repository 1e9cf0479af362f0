"""AI budgets: a model call's worst-case cost is reserved before the call is made, its actual
cost replaces the reservation afterwards, and a call that was not billed releases it.

Reservations are serialised per project and per user by transaction-scoped advisory locks,
always taken project first, then user, so they cannot deadlock. Under both locks a reservation
is admitted only when, for each scope, spent + reserved + estimate <= budget: two jobs racing
for the last dollars see each other's reservations, and the second is refused. Settling (usage
row in, reservation out) happens in one transaction, and every check reads spend and
reservations in one statement, so a check sees a call either reserved or spent, never neither.

A reservation left by a crashed call stops counting at `expires_at`, or as soon as its step is
retried (`release_step`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from uuid import UUID

from store.db import Conn

LOCK_CLASS = 0x7662  # "vb"; the second key is hashtext() of the scope and its id
_MICRO = Decimal("0.000001")


@dataclass(frozen=True, slots=True)
class Budgets:
    """Spend allowed in US dollars; 0 refuses every model call."""

    project_usd: float
    user_usd: float


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a call or a job may not start: `scope` is "project" or "user"."""

    scope: str
    budget_usd: float
    spent_usd: float
    reserved_usd: float
    estimate_usd: float = 0.0

    def message(self) -> str:
        text = (
            f"the {self.scope}'s AI budget of ${self.budget_usd:.2f} is spent "
            f"(${self.spent_usd:.2f} used"
        )
        if self.reserved_usd:
            text += f", ${self.reserved_usd:.2f} reserved by calls in flight"
        if self.estimate_usd:
            text += f"; this call may cost up to ${self.estimate_usd:.4f}"
        return text + ")"

    def details(self) -> dict[str, object]:
        found: dict[str, object] = {
            "scope": self.scope,
            "budget_usd": self.budget_usd,
            "spent_usd": round(self.spent_usd, 6),
            "reserved_usd": round(self.reserved_usd, 6),
        }
        if self.estimate_usd:
            found["estimate_usd"] = round(self.estimate_usd, 6)
        return found


def money(amount: float) -> Decimal:
    """Dollars as the tables store them, rounded up: a reservation never undercounts."""
    return Decimal(repr(amount)).quantize(_MICRO, rounding=ROUND_CEILING)


_SPEND = """
    SELECT (SELECT coalesce(sum(cost_usd), 0) FROM ai_usage WHERE project_id = $1)
               AS project_spent,
           (SELECT coalesce(sum(amount_usd), 0) FROM ai_reservations
            WHERE project_id = $1 AND expires_at > now() AND call_key IS DISTINCT FROM $3)
               AS project_reserved,
           (SELECT coalesce(sum(cost_usd), 0) FROM ai_usage WHERE user_id = $2) AS user_spent,
           (SELECT coalesce(sum(amount_usd), 0) FROM ai_reservations
            WHERE user_id = $2 AND expires_at > now() AND call_key IS DISTINCT FROM $3)
               AS user_reserved,
           -- An admin's per-user budget replaces the configured one (store/quotas.py).
           (SELECT ai_budget_usd FROM user_quotas WHERE user_id = $2) AS user_budget
"""


async def _refusal(
    conn: Conn,
    project_id: UUID,
    user_id: UUID | None,
    budgets: Budgets,
    estimate: Decimal,
    *,
    exclude: str | None,
    strict: bool,
) -> Refusal | None:
    """The first scope the estimate does not fit in. `strict`: spend must stay below the
    budget even with nothing to add (the API's check before a job starts)."""
    row = await conn.fetchrow(_SPEND, project_id, user_id, exclude)
    assert row is not None
    scopes = [("project", budgets.project_usd)]
    if user_id is not None:
        own: Decimal | None = row["user_budget"]
        scopes.append(("user", budgets.user_usd if own is None else float(own)))
    for scope, budget in scopes:
        spent: Decimal = row[f"{scope}_spent"]
        reserved: Decimal = row[f"{scope}_reserved"]
        total = spent + reserved + estimate
        limit = Decimal(repr(budget))
        if total > limit or (strict and total >= limit):
            return Refusal(scope, budget, float(spent), float(reserved), float(estimate))
    return None


async def over_budget(
    conn: Conn, project_id: UUID, user_id: UUID | None, budgets: Budgets
) -> Refusal | None:
    """Whether the project's or the user's budget is used up already (spent + reserved)."""
    return await _refusal(conn, project_id, user_id, budgets, Decimal(0), exclude=None, strict=True)


async def reserve(
    conn: Conn,
    *,
    call_key: str,
    job_id: UUID | None,
    project_id: UUID,
    user_id: UUID | None,
    amount_usd: float,
    budgets: Budgets,
    ttl_s: float,
) -> Refusal | None:
    """Reserve `amount_usd` for the call `call_key`, or say which budget it does not fit."""
    amount = money(amount_usd)
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))", LOCK_CLASS, f"project:{project_id}"
        )
        if user_id is not None:
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))", LOCK_CLASS, f"user:{user_id}"
            )
        # Housekeeping under the lock: the sums ignore expired rows anyway.
        await conn.execute(
            "DELETE FROM ai_reservations WHERE project_id = $1 AND expires_at <= now()",
            project_id,
        )
        refused = await _refusal(
            conn, project_id, user_id, budgets, amount, exclude=call_key, strict=False
        )
        if refused is not None:
            return refused
        await conn.execute(
            """
            INSERT INTO ai_reservations (call_key, job_id, project_id, user_id, amount_usd,
                                         expires_at)
            VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
            ON CONFLICT (call_key) DO UPDATE
                SET amount_usd = EXCLUDED.amount_usd, expires_at = EXCLUDED.expires_at
            """,
            call_key,
            job_id,
            project_id,
            user_id,
            amount,
            float(ttl_s),
        )
    return None


async def release(conn: Conn, call_key: str) -> None:
    await conn.execute("DELETE FROM ai_reservations WHERE call_key = $1", call_key)


async def release_step(conn: Conn, job_id: UUID, step_key: str) -> int:
    """Drop the reservations of earlier attempts of one step (their calls are over)."""
    outcome = await conn.execute(
        "DELETE FROM ai_reservations WHERE job_id = $1 AND starts_with(call_key, $2)",
        job_id,
        step_key + "#",
    )
    return int(outcome.rsplit(" ", 1)[-1])


async def step_billed(conn: Conn, job_id: UUID, step_key: str) -> bool:
    """Whether a model call of this step was metered already (by an earlier attempt)."""
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM ai_usage WHERE job_id = $1 AND starts_with(call_key, $2))",
        job_id,
        step_key + "#",
    )
    return found
