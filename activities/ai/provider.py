"""The provider port: what an AI job asks, what comes back, and what it costs.

Two implementations: `AnthropicProvider` (the Messages API) and `OfflineProvider` (real tools,
no model). Providers know nothing of Temporal: they raise `ProviderError`, which the activity
turns into a retryable or non-retryable `ApplicationError`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from workflows.ai.contract import SourceFile

# --- the answers, validated -----------------------------------------------------------------


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FindingModel(_Answer):
    path: str
    line_start: int = Field(ge=1)
    line_end: int = Field(ge=1)
    severity: Literal["error", "warning", "info"]
    category: str = Field(min_length=1, max_length=100)
    message: str = Field(min_length=1, max_length=4000)
    suggestion: str | None = Field(default=None, max_length=20_000)


class ReviewAnswer(_Answer):
    findings: list[FindingModel] = Field(default_factory=list, max_length=500)


class TestsAnswer(_Answer):
    code: str = Field(min_length=1, max_length=90_000)
    notes: str = ""


class FileChangeModel(_Answer):
    path: str = Field(min_length=1, max_length=1024)
    content: str = Field(max_length=1_000_000)


class ChangesAnswer(_Answer):
    explanation: str = ""
    changes: list[FileChangeModel] = Field(default_factory=list, max_length=50)


ANSWERS: dict[str, type[_Answer]] = {
    "review": ReviewAnswer,
    "tests": TestsAnswer,
    "debug": ChangesAnswer,
    "generate": ChangesAnswer,
}


# --- requests, usage, errors ----------------------------------------------------------------


@dataclass(frozen=True)
class ProviderRequest:
    task: str  # review | tests | debug | generate
    files: list[SourceFile]
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderUsage:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: ProviderUsage) -> ProviderUsage:
        return ProviderUsage(
            self.calls + other.calls,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_creation_tokens + other.cache_creation_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cost_usd + other.cost_usd,
        )


@dataclass(frozen=True)
class ProviderAnswer:
    answer: dict[str, Any]  # validated against ANSWERS[task], as JSON
    usage: ProviderUsage


class ProviderError(Exception):
    """`kind`: retryable | rejected | not_configured | invalid_answer | budget_exceeded."""

    def __init__(
        self,
        message: str,
        kind: str,
        retry_after_s: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.retry_after_s = retry_after_s
        self.details = details


Beat = Callable[[], None]
# Called inside `Meter.call` with what the call cost, as soon as the provider has billed it.
Bill = Callable[[ProviderUsage], None]


class Meter(Protocol):
    """Budget keeping around each model call (see `activities/ai/metering.py`)."""

    def call(self, estimate_usd: float) -> AbstractAsyncContextManager[Bill]:
        """Reserve `estimate_usd`, the most the call can cost, before it is made (raising
        `ProviderError(kind="budget_exceeded")` when a budget cannot take it). Inside the block
        the provider reports the call's usage through the `Bill` once it was billed; on leaving,
        that usage replaces the reservation, and a call never billed releases it."""
        ...


class Provider(Protocol):
    name: str
    model: str

    async def ask(self, request: ProviderRequest, beat: Beat, meter: Meter) -> ProviderAnswer:
        """Answer `request`; `beat` is called while a long answer streams in, and every model
        call is made inside `meter.call`."""
        ...

    async def close(self) -> None: ...


# --- prices ---------------------------------------------------------------------------------

# US dollars per million tokens: (input, output). Cache writes cost 1.25x input, reads 0.1x.
PRICES: dict[str, tuple[float, float]] = {
    "claude-opus-4-5": (5.0, 25.0),
    "claude-opus-4-1": (15.0, 75.0),
    "claude-opus-4": (15.0, 75.0),
    "claude-sonnet": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-3-5-haiku": (0.8, 4.0),
}
DEFAULT_PRICE = (3.0, 15.0)


def price_of(model: str) -> tuple[float, float]:
    for prefix in sorted(PRICES, key=len, reverse=True):
        if model.startswith(prefix):
            return PRICES[prefix]
    return DEFAULT_PRICE


def cost_usd(model: str, usage: ProviderUsage) -> float:
    per_in, per_out = price_of(model)
    return (
        usage.input_tokens * per_in
        + usage.output_tokens * per_out
        + usage.cache_creation_tokens * per_in * 1.25
        + usage.cache_read_tokens * per_in * 0.1
    ) / 1_000_000


# Anthropic counts a few tokens of framing per message and per system block on top of the text.
_FRAMING_TOKENS = 64


def worst_case_cost_usd(model: str, prompt_bytes: int, max_tokens: int) -> float:
    """The most a call can cost: a token covers at least one byte of UTF-8, every input token
    is priced as a cache write (the dearest kind), and the answer runs to `max_tokens`."""
    per_in, per_out = price_of(model)
    return ((prompt_bytes + _FRAMING_TOKENS) * per_in * 1.25 + max_tokens * per_out) / 1_000_000
