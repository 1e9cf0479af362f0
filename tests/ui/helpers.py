"""What the browser tests share: reading an editor's text, the server's live text, files."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import httpx
from playwright.async_api import Locator, Page, expect

from tests.collab.conftest import WSClient
from tests.conftest import Server
from tests.support import Account


def editor(page: Page) -> Locator:
    return page.get_by_test_id("editor")


async def open_ready(page: Page) -> Locator:
    """The visible editor once its document joined (CodeMirror content present)."""
    found = editor(page)
    await expect(found.locator(".cm-content")).to_be_visible()
    await expect(found).to_have_attribute("data-role", re.compile("^(owner|editor|viewer)$"))
    return found


async def editor_text(page: Page) -> str:
    text: str = await editor(page).evaluate("el => el.vfText()")
    return text


async def wait_text(page: Page, predicate: Callable[[str], bool], timeout: float = 20) -> str:
    """Poll the editor's exact text until `predicate(text)` holds (a deadline, no sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        text = await editor_text(page)
        if predicate(text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"editor text never matched; it is {text!r}")
        await page.wait_for_timeout(50)


async def server_text(server: Server, project_id: str, who: Account, path: str) -> str:
    """The live text of `path` as the server holds it (a join on a fresh socket)."""
    ws = await WSClient.connect(server, project_id, who.access_token)
    try:
        joined = await ws.join(path)
        content: str = joined["payload"]["content"]
        return content
    finally:
        await ws.close()


async def put_file(
    api: httpx.AsyncClient, who: Account, project_id: str, path: str, content: str
) -> int:
    response = await api.put(
        f"/api/v1/projects/{project_id}/files/{path}",
        json={"content": content},
        headers=who.headers,
    )
    assert response.status_code in (200, 201), response.text
    version: int = response.json()["version"]
    return version


async def add_member(
    api: httpx.AsyncClient, owner: Account, project_id: str, who: Account, role: str
) -> None:
    response = await api.post(
        f"/api/v1/projects/{project_id}/members",
        json={"email": who.email, "role": role},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
