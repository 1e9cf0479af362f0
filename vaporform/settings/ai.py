"""The AI provider, its model, and what AI jobs may spend."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vaporform.settings.env import env_float, env_int


@dataclass(frozen=True, slots=True)
class AISettings:
    """The AI provider and what it may spend. No API key: the offline provider (ruff,
    Hypothesis)."""

    api_key: str | None = None
    base_url: str | None = None  # None: the SDK's default (or ANTHROPIC_BASE_URL)
    model: str = "claude-sonnet-4-6"
    request_timeout_s: float = 120.0
    # Spend allowed per project and per user, in US dollars; 0 refuses every new job.
    budget_project_usd: float = 50.0
    budget_user_usd: float = 20.0
    context_tokens: int = 60_000  # project files given to the model per job
    test_rounds: int = 2  # failing generated tests fed back to the model at most this often
    test_runs: int = 5  # a generated test is kept only if it passes this many runs in a row


def ai_settings(env: Mapping[str, str]) -> AISettings:
    base = AISettings()
    return AISettings(
        api_key=env.get("ANTHROPIC_API_KEY") or None,
        base_url=env.get("ANTHROPIC_BASE_URL") or None,
        model=env.get("VAPORFORM_AI_MODEL") or base.model,
        request_timeout_s=env_float(env, "VAPORFORM_AI_TIMEOUT_S", base.request_timeout_s),
        budget_project_usd=env_float(
            env, "VAPORFORM_AI_BUDGET_PROJECT_USD", base.budget_project_usd
        ),
        budget_user_usd=env_float(env, "VAPORFORM_AI_BUDGET_USER_USD", base.budget_user_usd),
        context_tokens=env_int(env, "VAPORFORM_AI_CONTEXT_TOKENS", base.context_tokens),
        test_rounds=env_int(env, "VAPORFORM_AI_TEST_ROUNDS", base.test_rounds),
        test_runs=env_int(env, "VAPORFORM_AI_TEST_RUNS", base.test_runs),
    )
