"""Fixed-window rate limits on top of the ephemeral store; 429 with `Retry-After`."""

from __future__ import annotations

import hashlib

from web.errors import APIError
from web.services import services


async def enforce(scope: str, subject: str, limit: int, window_s: int) -> None:
    # Subjects (emails, addresses) are hashed so the store never holds them in clear.
    digest = hashlib.sha256(subject.lower().encode()).hexdigest()[:32]
    count, reset_s = await services().ephemeral.hit(f"rl:{scope}:{digest}", window_s)
    if count > limit:
        raise APIError(
            429,
            "rate_limited",
            "too many attempts, try again later",
            details={"retry_after": reset_s, "limit": limit, "window_s": window_s},
            headers={"Retry-After": str(reset_s)},
        )
