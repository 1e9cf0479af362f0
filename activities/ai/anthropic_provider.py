"""`AnthropicProvider`: the Messages API through the official SDK.

The SDK never retries (`max_retries=0`): Temporal does, with the activity's retry policy, so
a retry survives a worker crash and is visible in the workflow history. Answers are JSON that
we validate; an invalid one is sent back once with the validation error for repair.
"""

from __future__ import annotations

import json
import re
from typing import Any

import anthropic
from pydantic import ValidationError

from activities.ai.prompts import SYSTEM, context_block, task_text
from activities.ai.provider import (
    ANSWERS,
    Beat,
    Bill,
    Meter,
    ProviderAnswer,
    ProviderError,
    ProviderRequest,
    ProviderUsage,
    cost_usd,
    worst_case_cost_usd,
)

# Answers longer than this are streamed: a long non-streamed request can hit HTTP timeouts,
# and streaming lets the activity heartbeat while tokens arrive.
STREAM_ABOVE_TOKENS = 4096
MAX_TOKENS = {"review": 4096, "tests": 8192, "debug": 16000, "generate": 16000}

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.MULTILINE)


class AnthropicProvider:
    name = "anthropic"

    def __init__(
        self,
        api_key: str,
        model: str,
        *,
        base_url: str | None = None,
        timeout_s: float = 120.0,
    ) -> None:
        self.model = model
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s
        )

    async def close(self) -> None:
        await self._client.close()

    async def ask(self, request: ProviderRequest, beat: Beat, meter: Meter) -> ProviderAnswer:
        system: list[dict[str, Any]] = [
            {"type": "text", "text": SYSTEM[request.task]},
            # The files are the long, repeated part: cache them for the repair call and the
            # feedback rounds (the system text before them is part of the cached prefix).
            {
                "type": "text",
                "text": context_block(request.files),
                "cache_control": {"type": "ephemeral"},
            },
        ]
        messages: list[dict[str, Any]] = [
            {"role": "user", "content": task_text(request.task, request.payload)}
        ]
        max_tokens = MAX_TOKENS[request.task]
        text, usage = await self._call(system, messages, max_tokens, beat, meter)
        try:
            return ProviderAnswer(parse_answer(request.task, text), usage)
        except ValueError as first:
            messages += [
                {"role": "assistant", "content": text or "{}"},
                {
                    "role": "user",
                    "content": f"That answer is not valid: {first}. Reply with only the "
                    "corrected JSON object.",
                },
            ]
            text, more = await self._call(system, messages, max_tokens, beat, meter)
            usage = usage + more
            try:
                return ProviderAnswer(parse_answer(request.task, text), usage)
            except ValueError as second:
                raise ProviderError(
                    f"the model's answer was not valid JSON for a {request.task} job, even "
                    f"after one repair: {second}",
                    "invalid_answer",
                ) from None

    async def _call(
        self,
        system: list[dict[str, Any]],
        messages: list[dict[str, Any]],
        max_tokens: int,
        beat: Beat,
        meter: Meter,
    ) -> tuple[str, ProviderUsage]:
        arguments: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "system": system,
            "messages": messages,
        }
        prompt = json.dumps([system, messages], ensure_ascii=False).encode()
        async with meter.call(worst_case_cost_usd(self.model, len(prompt), max_tokens)) as bill:
            message = await self._send(arguments, max_tokens, beat, bill)
            usage = self._usage(message.usage)
            bill(usage)
        text = "".join(block.text for block in message.content if block.type == "text")
        if message.stop_reason == "max_tokens":
            # A cut-off JSON answer cannot validate; say why rather than "invalid JSON". It was
            # billed all the same, and is metered above.
            raise ProviderError(
                f"the answer was longer than {max_tokens} tokens; ask for less",
                "invalid_answer",
            )
        return text, usage

    async def _send(
        self, arguments: dict[str, Any], max_tokens: int, beat: Beat, bill: Bill
    ) -> anthropic.types.Message:
        """One request. Error statuses are not billed; a stream that breaks after it started
        is, for what the provider reported so far."""
        try:
            if max_tokens > STREAM_ABOVE_TOKENS:
                async with self._client.messages.stream(**arguments) as stream:
                    try:
                        async for _ in stream:
                            beat()
                    except BaseException as exc:
                        partial = _snapshot(stream)
                        if partial is not None:  # the provider reported usage before the break
                            bill(self._usage(partial.usage))
                        if isinstance(exc, anthropic.AnthropicError | ProviderError) or not (
                            isinstance(exc, Exception)
                        ):
                            raise
                        # A connection cut mid-body surfaces as the HTTP library's own error.
                        raise ProviderError(
                            f"the answer stream broke off: {exc!r}", "retryable"
                        ) from None
                    return await stream.get_final_message()
            created: anthropic.types.Message = await self._client.messages.create(**arguments)
            return created
        except anthropic.APIStatusError as exc:
            raise _status_error(exc) from None
        except anthropic.APITimeoutError:
            raise ProviderError("the AI provider timed out", "retryable") from None
        except anthropic.APIConnectionError as exc:
            raise ProviderError(f"cannot reach the AI provider: {exc}", "retryable") from None

    def _usage(self, got: anthropic.types.Usage) -> ProviderUsage:
        usage = ProviderUsage(
            calls=1,
            input_tokens=got.input_tokens,
            output_tokens=got.output_tokens,
            cache_creation_tokens=got.cache_creation_input_tokens or 0,
            cache_read_tokens=got.cache_read_input_tokens or 0,
        )
        return ProviderUsage(**{**usage.__dict__, "cost_usd": cost_usd(self.model, usage)})


def _snapshot(stream: Any) -> anthropic.types.Message | None:
    """The message as streamed so far; None when the stream broke before `message_start`."""
    try:
        found: anthropic.types.Message | None = stream.current_message_snapshot
    except AssertionError:
        return None
    return found


# Error types the API may also send as an `error` event inside a streamed 200 answer.
_RETRYABLE_TYPES = ("overloaded_error", "api_error", "rate_limit_error", "timeout_error")


def _status_error(exc: anthropic.APIStatusError) -> ProviderError:
    status = exc.status_code
    detail = _message_of(exc)
    if status in (408, 409, 429) or status >= 500 or _error_type(exc) in _RETRYABLE_TYPES:
        return ProviderError(
            f"the AI provider is busy ({status}): {detail}",
            "retryable",
            retry_after_s=_retry_after(exc),
        )
    return ProviderError(f"the AI provider refused the request ({status}): {detail}", "rejected")


def _error_type(exc: anthropic.APIStatusError) -> str | None:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("type"), str):
            return str(error["type"])
    return None


def _message_of(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return exc.message


def _retry_after(exc: anthropic.APIStatusError) -> float | None:
    raw = exc.response.headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None  # an HTTP date: rare from this API; fall back to our backoff


def parse_answer(task: str, text: str) -> dict[str, Any]:
    """The JSON object in `text`, validated for `task`; ValueError says what is wrong."""
    stripped = _FENCE.sub("", text.strip()).strip()
    start, end = stripped.find("{"), stripped.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object in the answer")
    try:
        data = json.loads(stripped[start : end + 1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from None
    try:
        model = ANSWERS[task].model_validate(data)
    except ValidationError as exc:
        raise ValueError(
            "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
        ) from None
    return model.model_dump(mode="json")
