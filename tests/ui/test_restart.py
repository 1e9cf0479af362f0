"""The API restarts while someone keeps typing: after the reconnect nothing typed is missing or
doubled. The API runs as its own process (`vaporform api`) so it can be killed and started
again on the same port; the browser never reloads."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.conftest import Server, free_port
from tests.support import api_process_env, create_project, register, wait_until
from tests.ui.conftest import ROOT, Browsers
from tests.ui.helpers import editor, open_ready, put_file, server_text, wait_text
from vaporform.config import Config


class ApiProcess:
    def __init__(self, config: Config, log: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process: asyncio.subprocess.Process | None = None
        self.env = api_process_env(config, self.port)

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "vaporform.cli",
                "api",
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=out,
            )

        async def healthy() -> bool:
            try:
                async with httpx.AsyncClient() as client:
                    return (await client.get(self.base_url + "/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(healthy, timeout=30, what="the API process")

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()


@pytest.fixture
async def api_process(
    config: Config, worker: None, bundle: Path, tmp_path: Path
) -> AsyncIterator[ApiProcess]:
    found = ApiProcess(config, tmp_path / "api.log")
    await found.start()
    yield found
    if found.process is not None and found.process.returncode is None:
        found.process.kill()
        await found.process.wait()


async def test_nothing_typed_is_lost_or_doubled_across_an_api_restart(
    browser: Browser, api_process: ApiProcess
) -> None:
    people = Browsers(browser, api_process.base_url)
    async with httpx.AsyncClient(base_url=api_process.base_url, timeout=30) as api:
        owner = await register(api, "typist")
        pid = (await create_project(api, owner, name="restart"))["id"]
        await put_file(api, owner, pid, "log.txt", "")
    try:
        page = await people.signed_in(owner, f"/projects/{pid}/files/log.txt")
        await open_ready(page)
        await editor(page).locator(".cm-content").click()
        typed = "".join(f"<{i:03d}>" for i in range(120))  # ~600 keys, ~6 s of typing
        typing = asyncio.ensure_future(page.keyboard.type(typed, delay=10))
        await wait_text(page, lambda text: len(text) > 100)
        await api_process.kill()
        status = page.get_by_test_id("connection-status")
        await expect(status).to_have_attribute("data-state", "offline")
        await api_process.start()
        await typing
        await expect(status).to_have_attribute("data-state", "online", timeout=30_000)
        final = await wait_text(page, lambda text: text == typed, timeout=30)
        assert final == typed
        server = Server(None, api_process.port)  # type: ignore[arg-type]

        async def server_has_it() -> bool:
            return await server_text(server, pid, owner, "log.txt") == typed

        await wait_until(
            server_has_it, timeout=20, what="the server's text to equal the typed text"
        )
    finally:
        await people.close()
