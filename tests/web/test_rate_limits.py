"""Login rate limits per email and per client address, on servers with small limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest

from tests.conftest import api_client
from tests.support import assert_error, register, unique_email
from vaporform.config import Config
from vaporform.settings.auth import RateLimits


@pytest.fixture
async def strict_http(
    config: Config, run_id: str, request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    limited = replace(
        config,
        redis_prefix=f"vf-test-{run_id}-{request.node.name}:",
        rate_limits=RateLimits(login_per_email=3, login_per_ip=5, login_window_s=60),
    )
    async with api_client(limited) as client:
        yield client


async def test_login_is_limited_per_email(strict_http: httpx.AsyncClient) -> None:
    account = await register(strict_http)
    attempt = {"email": account.email, "password": "wrong password"}
    for _ in range(3):
        assert_error(await strict_http.post("/api/v1/auth/login", json=attempt), 401)
    limited = await strict_http.post("/api/v1/auth/login", json=attempt)
    error = assert_error(limited, 429, "rate_limited")
    retry_after = int(limited.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert error["details"]["retry_after"] == retry_after
    # Even the right password waits out the window: the limit is checked first.
    right = {"email": account.email, "password": account.password}
    assert_error(await strict_http.post("/api/v1/auth/login", json=right), 429, "rate_limited")


async def test_login_is_limited_per_address(strict_http: httpx.AsyncClient) -> None:
    for _ in range(5):
        attempt = {"email": unique_email(), "password": "wrong password"}
        assert_error(await strict_http.post("/api/v1/auth/login", json=attempt), 401)
    attempt = {"email": unique_email(), "password": "wrong password"}
    assert_error(await strict_http.post("/api/v1/auth/login", json=attempt), 429, "rate_limited")
