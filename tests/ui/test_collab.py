"""Live editing in real browsers: people typing at once converge, viewers cannot type, and an
editor who is removed from the project stops editing."""

from __future__ import annotations

import asyncio

import httpx
from playwright.async_api import Page, expect

from tests.conftest import Server
from tests.support import Account, create_project, register
from tests.ui.conftest import Browsers
from tests.ui.helpers import (
    add_member,
    editor,
    editor_text,
    open_ready,
    put_file,
    server_text,
    wait_text,
)

START = "first line\nsecond line\nthird line\n"


async def type_at(page: Page, where: str, text: str) -> None:
    await editor(page).locator(".cm-content").click()
    await page.keyboard.press(where)
    await page.keyboard.type(text, delay=15)


async def test_two_people_typing_at_once_converge_and_a_late_opener_agrees(
    api: httpx.AsyncClient, ui_server: Server, people: Browsers, owner: Account
) -> None:
    bob = await register(api, "bob")
    project = await create_project(api, owner, name="together")
    pid = project["id"]
    await add_member(api, owner, pid, bob, "editor")
    await put_file(api, owner, pid, "notes.txt", START)
    url = f"/projects/{pid}/files/notes.txt"
    ada_page = await people.signed_in(owner, url)
    bob_page = await people.signed_in(bob, url)
    await open_ready(ada_page)
    await open_ready(bob_page)
    await expect(ada_page.get_by_test_id("presence").locator(".avatar")).to_have_count(2)

    # Unique strings, typed fast and at the same time at both ends of the file (~3 s each).
    ada_text = "".join(f"a{i:02d} " for i in range(45))
    bob_text = "".join(f"b{i:02d} " for i in range(45))
    await asyncio.gather(
        type_at(ada_page, "Control+Home", ada_text), type_at(bob_page, "Control+End", bob_text)
    )

    def complete(text: str) -> bool:
        return ada_text in text and bob_text in text

    final = await wait_text(ada_page, complete)
    assert await wait_text(bob_page, lambda text: text == final) == final
    assert final == ada_text + START + bob_text
    assert await server_text(ui_server, pid, owner, "notes.txt") == final

    # Someone who opens the file now sees exactly the same text.
    carol = await register(api, "carol")
    await add_member(api, owner, pid, carol, "viewer")
    late = await people.signed_in(carol, url)
    await open_ready(late)
    assert await wait_text(late, lambda text: text == final) == final


async def test_a_viewer_cannot_change_the_text(
    api: httpx.AsyncClient, ui_server: Server, people: Browsers, owner: Account
) -> None:
    viewer = await register(api, "vic")
    pid = (await create_project(api, owner, name="read-only"))["id"]
    await add_member(api, owner, pid, viewer, "viewer")
    await put_file(api, owner, pid, "a.py", "x = 1\n")
    page = await people.signed_in(viewer, f"/projects/{pid}/files/a.py")
    found = await open_ready(page)
    await expect(found).to_have_attribute("data-role", "viewer")
    content = found.locator(".cm-content")
    await expect(content).to_have_attribute("contenteditable", "false")
    await content.click()
    await page.keyboard.type("hacked")
    await page.keyboard.press("Backspace")
    assert await editor_text(page) == "x = 1\n"
    assert await server_text(ui_server, pid, owner, "a.py") == "x = 1\n"


async def test_an_editor_removed_from_the_project_loses_editing(
    api: httpx.AsyncClient, ui_server: Server, people: Browsers, owner: Account
) -> None:
    eve = await register(api, "eve")
    pid = (await create_project(api, owner, name="revoked"))["id"]
    await add_member(api, owner, pid, eve, "editor")
    await put_file(api, owner, pid, "b.txt", "hello\n")
    page = await people.signed_in(eve, f"/projects/{pid}/files/b.txt")
    found = await open_ready(page)
    content = found.locator(".cm-content")
    await content.click()
    await page.keyboard.press("Control+End")
    await page.keyboard.type("ok")
    await wait_text(page, lambda text: text == "hello\nok")

    removed = await api.delete(f"/api/v1/projects/{pid}/members/{eve.id}", headers=owner.headers)
    assert removed.status_code == 204, removed.text
    await expect(content).to_have_attribute("contenteditable", "false")
    await expect(page.get_by_test_id("connection-status")).to_have_attribute(
        "data-state", "no_access"
    )
    await page.keyboard.type("more")
    assert await server_text(ui_server, pid, owner, "b.txt") == "hello\nok"
