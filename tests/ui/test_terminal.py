"""The terminal panel: xterm.js over the terminal WebSocket to the project's container."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.support import Account, create_project
from tests.ui.conftest import Browsers


async def screen_lines(page: Page) -> list[str]:
    lines: list[str] = (
        await page.get_by_test_id("terminal").locator(".xterm-rows > div").all_inner_texts()
    )
    return [line.replace("\xa0", " ").rstrip() for line in lines]


async def wait_line(page: Page, pattern: str) -> re.Match[str]:
    compiled = re.compile(pattern)
    for _ in range(400):
        for line in await screen_lines(page):
            found = compiled.fullmatch(line)
            if found:
                return found
        await page.wait_for_timeout(50)
    raise AssertionError(f"no terminal line matches {pattern!r}: {await screen_lines(page)}")


async def test_echo_in_the_terminal_and_resize(
    api: httpx.AsyncClient, people: Browsers, owner: Account, ui_docker_worker: bool
) -> None:
    if not ui_docker_worker:
        pytest.skip("no Docker engine")
    pid = (await create_project(api, owner, name="shell"))["id"]
    page = await people.signed_in(owner, f"/projects/{pid}")
    await page.keyboard.press("Control+`")
    terminal = page.get_by_test_id("terminal")
    await terminal.get_by_role("button", name="Start the container").click()
    await expect(terminal.locator(".xterm-rows")).to_be_visible(timeout=60_000)
    await terminal.click()
    await page.keyboard.type("echo hi\n")
    await wait_line(page, "hi")

    await page.keyboard.type("stty size\n")
    before = await wait_line(page, r"(\d+) (\d+)")
    await page.set_viewport_size({"width": 1600, "height": 1000})
    await page.keyboard.type("clear; stty size\n")

    async def grown() -> re.Match[str]:
        for _ in range(200):
            found = await wait_line(page, r"(\d+) (\d+)")
            if found.group(0) != before.group(0):
                return found
            await page.wait_for_timeout(100)
            await page.keyboard.type("clear; stty size\n")
        raise AssertionError("the terminal size never changed")

    after = await grown()
    assert int(after.group(2)) > int(before.group(2))  # more columns
    assert int(after.group(1)) > int(before.group(1))  # more rows
