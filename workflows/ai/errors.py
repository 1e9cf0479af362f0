"""Error types of the AI activities, the job error codes they become, and the retry policy
of model calls (which of those errors it does not retry).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

# Error types of the AI activities (ApplicationError.type) and the job error codes they become.
PROVIDER_RETRYABLE = "AIProviderRetryable"
PROVIDER_REJECTED = "AIProviderRejected"
PROVIDER_NOT_CONFIGURED = "AIProviderNotConfigured"
INVALID_ANSWER = "AIInvalidAnswer"
NO_FILES = "AINoFiles"
CONTAINER_UNAVAILABLE = "AIContainerUnavailable"
# A model call did not fit the project's or the user's budget (its details say which).
BUDGET_EXCEEDED = "AIBudgetExceeded"

ERROR_CODES = {
    PROVIDER_REJECTED: "ai_provider_rejected",
    PROVIDER_NOT_CONFIGURED: "ai_provider_not_configured",
    PROVIDER_RETRYABLE: "ai_provider_unavailable",
    INVALID_ANSWER: "ai_invalid_answer",
    NO_FILES: "no_files",
    CONTAINER_UNAVAILABLE: "container_unavailable",
    BUDGET_EXCEEDED: "budget_exceeded",
}

# Model calls: 429/529/5xx back off (a `retry-after` overrides the interval through
# `next_retry_delay`); after ~2 minutes of refusals the job fails as unavailable.
PROVIDER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=6,
    non_retryable_error_types=[
        PROVIDER_REJECTED,
        PROVIDER_NOT_CONFIGURED,
        INVALID_ANSWER,
        BUDGET_EXCEEDED,
    ],
)
