"""Queries on the AI tables: jobs, findings, usage and the answer cache."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from store.db import Conn

KINDS = ("review", "tests", "debug", "generate")
STATUSES = ("queued", "running", "succeeded", "failed")


@dataclass(frozen=True, slots=True)
class Job:
    id: UUID
    project_id: UUID
    user_id: UUID | None
    kind: str
    status: str
    input: dict[str, Any]
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    workflow_id: str
    applied_at: datetime | None
    applied_files: list[dict[str, Any]] | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Finding:
    path: str
    file_version: int
    line_start: int
    line_end: int
    severity: str
    category: str
    message: str
    suggestion: str | None
    source: str

    def public(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "file_version": self.file_version,
            "line_start": self.line_start,
            "line_end": self.line_end,
            "severity": self.severity,
            "category": self.category,
            "message": self.message,
            "suggestion": self.suggestion,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class Usage:
    calls: int
    cached_calls: int
    input_tokens: int
    output_tokens: int
    cache_creation_tokens: int
    cache_read_tokens: int
    cost_usd: float

    def public(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "cached_calls": self.cached_calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_tokens": self.cache_creation_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cost_usd": self.cost_usd,
        }


_JOB_COLUMNS = """id, project_id, user_id, kind, status, input, result, error, workflow_id,
                  applied_at, applied_files, created_at, updated_at"""


async def create_job(
    conn: Conn,
    *,
    job_id: UUID,
    project_id: UUID,
    user_id: UUID,
    kind: str,
    input: dict[str, Any],
    workflow_id: str,
) -> Job:
    row = await conn.fetchrow(
        f"""
        INSERT INTO ai_jobs (id, project_id, user_id, kind, input, workflow_id)
        VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_JOB_COLUMNS}
        """,
        job_id,
        project_id,
        user_id,
        kind,
        input,
        workflow_id,
    )
    assert row is not None
    return Job(**dict(row))


async def get_job(conn: Conn, project_id: UUID, job_id: UUID) -> Job | None:
    row = await conn.fetchrow(
        f"SELECT {_JOB_COLUMNS} FROM ai_jobs WHERE id = $1 AND project_id = $2",
        job_id,
        project_id,
    )
    return None if row is None else Job(**dict(row))


async def delete_job(conn: Conn, job_id: UUID) -> None:
    await conn.execute("DELETE FROM ai_jobs WHERE id = $1", job_id)


async def set_status(
    conn: Conn,
    job_id: UUID,
    status: str,
    *,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> bool:
    """Move a job on. A finished job never moves again: True only when the row changed."""
    outcome = await conn.execute(
        """
        UPDATE ai_jobs SET status = $2, result = coalesce($3, result),
                           error = coalesce($4, error), updated_at = now()
        WHERE id = $1 AND status NOT IN ('succeeded', 'failed') AND status IS DISTINCT FROM $2
        """,
        job_id,
        status,
        result,
        error,
    )
    return bool(outcome == "UPDATE 1")


async def mark_applied(conn: Conn, job_id: UUID, files: list[dict[str, Any]]) -> bool:
    """Claim the job's one apply; False when it was applied before."""
    outcome = await conn.execute(
        """
        UPDATE ai_jobs SET applied_at = now(), applied_files = $2, updated_at = now()
        WHERE id = $1 AND applied_at IS NULL
        """,
        job_id,
        files,
    )
    return bool(outcome == "UPDATE 1")


async def replace_findings(
    conn: Conn, job_id: UUID, project_id: UUID, findings: list[Finding]
) -> None:
    """Idempotent: a retried activity writes the same set again, not a second copy."""
    async with conn.transaction():
        await conn.execute("DELETE FROM ai_findings WHERE job_id = $1", job_id)
        await conn.executemany(
            """
            INSERT INTO ai_findings (job_id, project_id, path, file_version, line_start,
                                     line_end, severity, category, message, suggestion, source)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            """,
            [
                (
                    job_id,
                    project_id,
                    f.path,
                    f.file_version,
                    f.line_start,
                    f.line_end,
                    f.severity,
                    f.category,
                    f.message,
                    f.suggestion,
                    f.source,
                )
                for f in findings
            ],
        )


async def findings(conn: Conn, job_id: UUID) -> list[Finding]:
    rows = await conn.fetch(
        """
        SELECT path, file_version, line_start, line_end, severity, category, message,
               suggestion, source
        FROM ai_findings WHERE job_id = $1 ORDER BY id
        """,
        job_id,
    )
    return [Finding(**dict(r)) for r in rows]


async def record_usage(
    conn: Conn,
    *,
    call_key: str,
    job_id: UUID | None,
    project_id: UUID,
    user_id: UUID | None,
    model: str,
    calls: int,
    input_tokens: int,
    output_tokens: int,
    cache_creation_tokens: int,
    cache_read_tokens: int,
    cost_usd: float,
    cached: bool,
) -> None:
    await conn.execute(
        """
        INSERT INTO ai_usage (call_key, job_id, project_id, user_id, model, calls, input_tokens,
                              output_tokens, cache_creation_tokens, cache_read_tokens, cost_usd,
                              cached)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
        ON CONFLICT (call_key) DO NOTHING
        """,
        call_key,
        job_id,
        project_id,
        user_id,
        model,
        calls,
        input_tokens,
        output_tokens,
        cache_creation_tokens,
        cache_read_tokens,
        Decimal(str(round(cost_usd, 6))),
        cached,
    )


_USAGE_SUM = """
    SELECT coalesce(sum(calls), 0) AS calls,
           count(*) FILTER (WHERE cached) AS cached_calls,
           coalesce(sum(input_tokens), 0) AS input_tokens,
           coalesce(sum(output_tokens), 0) AS output_tokens,
           coalesce(sum(cache_creation_tokens), 0) AS cache_creation_tokens,
           coalesce(sum(cache_read_tokens), 0) AS cache_read_tokens,
           coalesce(sum(cost_usd), 0) AS cost_usd
    FROM ai_usage
"""


def _usage(row: Any) -> Usage:
    return Usage(
        calls=int(row["calls"]),
        cached_calls=int(row["cached_calls"]),
        input_tokens=int(row["input_tokens"]),
        output_tokens=int(row["output_tokens"]),
        cache_creation_tokens=int(row["cache_creation_tokens"]),
        cache_read_tokens=int(row["cache_read_tokens"]),
        cost_usd=float(row["cost_usd"]),
    )


async def usage_for_project(conn: Conn, project_id: UUID) -> Usage:
    return _usage(await conn.fetchrow(_USAGE_SUM + " WHERE project_id = $1", project_id))


async def usage_for_user(conn: Conn, user_id: UUID) -> Usage:
    return _usage(await conn.fetchrow(_USAGE_SUM + " WHERE user_id = $1", user_id))


async def usage_for_job(conn: Conn, job_id: UUID) -> Usage:
    return _usage(await conn.fetchrow(_USAGE_SUM + " WHERE job_id = $1", job_id))


async def cached_answer(conn: Conn, input_hash: str) -> dict[str, Any] | None:
    answer: dict[str, Any] | None = await conn.fetchval(
        """
        UPDATE ai_cache SET hits = hits + 1, last_hit_at = now()
        WHERE input_hash = $1 RETURNING answer
        """,
        input_hash,
    )
    return answer


async def store_answer(conn: Conn, input_hash: str, model: str, answer: dict[str, Any]) -> None:
    await conn.execute(
        """
        INSERT INTO ai_cache (input_hash, model, answer) VALUES ($1, $2, $3)
        ON CONFLICT (input_hash) DO NOTHING
        """,
        input_hash,
        model,
        answer,
    )
