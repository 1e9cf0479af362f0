"""Helpers shared by the tests: waiting for conditions and making users."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from store import db, users
from vaporform.config import Config
from web.passwords import Passwords


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, timeout: float = 10, what: str = "condition"
) -> None:
    """Poll `condition` until it holds, failing after `timeout` seconds (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        if await condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Account:
    id: str
    email: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def unique_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


async def register(http: httpx.AsyncClient, tag: str = "user") -> Account:
    email, password = unique_email(tag), "correct horse battery staple"
    response = await http.post(
        "/api/v1/auth/register", json={"email": email, "password": password, "name": tag.title()}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(
        id=body["user"]["id"],
        email=email,
        password=password,
        access_token=body["access_token"],
        refresh_token=body["refresh_token"],
    )


async def create_project(http: httpx.AsyncClient, owner: Account, **fields: Any) -> dict[str, Any]:
    payload = {"name": "demo", **fields}
    response = await http.post("/api/v1/projects", json=payload, headers=owner.headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is the JSON error shape with this status (and code)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"code", "message", "details"}, error
    if code is not None:
        assert error["code"] == code, error
    return error


async def spawn_api(env: Mapping[str, str], *args: str) -> asyncio.subprocess.Process:
    """`vaporform api` in a process of its own, its output discarded; `wait_for_api` next."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vaporform.cli",
        "api",
        *args,
        env=dict(env),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def wait_for_api(port: int) -> None:
    async def healthy() -> bool:
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                return (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    await wait_until(healthy, timeout=30, what="the API process")


def api_process_env(config: Config, port: int) -> dict[str, str]:
    """The environment of an API process of its own that serves like the session's app:
    same database, Redis prefix, task queue, data dir and signing secret, and the test
    settings for hashing and rate limits (their counters are shared through Redis)."""
    limits = config.rate_limits
    return {
        **os.environ,
        "DATABASE_URL": config.database_url,
        "REDIS_URL": config.redis_url or "",
        "VAPORFORM_REDIS_PREFIX": config.redis_prefix,
        "TEMPORAL_ADDRESS": config.temporal_address,
        "VAPORFORM_TASK_QUEUE": config.task_queue,
        "VAPORFORM_DATA_DIR": str(config.data_dir),
        "VAPORFORM_JWT_SECRET": config.jwt.secret,
        "VAPORFORM_API_PORT": str(port),
        "VAPORFORM_LOG_LEVEL": "WARNING",
        "VAPORFORM_ARGON2_TIME_COST": str(config.argon2_time_cost),
        "VAPORFORM_ARGON2_MEMORY_KIB": str(config.argon2_memory_kib),
        "VAPORFORM_LOGIN_PER_EMAIL": str(limits.login_per_email),
        "VAPORFORM_LOGIN_PER_IP": str(limits.login_per_ip),
        "VAPORFORM_REGISTER_PER_IP": str(limits.register_per_ip),
    }


async def create_admin(http: httpx.AsyncClient, config: Config) -> Account:
    """A user whose global role is admin, made in the database (no route makes the first one),
    then logged in over HTTP like anyone else."""
    email, password = unique_email("admin"), "correct horse battery staple"
    passwords = Passwords(
        time_cost=config.argon2_time_cost,
        memory_kib=config.argon2_memory_kib,
        parallelism=config.argon2_parallelism,
    )
    password_hash = await passwords.hash(password)
    conn = await db.connect(config.database_url)
    try:
        await users.create(
            conn, email=email, name="Admin", password_hash=password_hash, role="admin"
        )
    finally:
        await conn.close()
    response = await http.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["role"] == "admin"
    return Account(
        id=body["user"]["id"],
        email=email,
        password=password,
        access_token=body["access_token"],
        refresh_token=body["refresh_token"],
    )


def stop_processes(children: Sequence[subprocess.Popen[bytes]], logs: Mapping[str, Path]) -> None:
    """SIGTERM every child, wait for each (killing one that takes over 15 s), then fail if a
    log of theirs holds a traceback."""
    for child in children:
        child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    for name, log in logs.items():
        text = log.read_text(errors="replace")
        assert "Traceback" not in text, f"{name}:\n{text[-3000:]}"
