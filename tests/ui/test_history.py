"""History from the UI: a diff of an old version, and restoring it."""

from __future__ import annotations

import httpx
from playwright.async_api import expect

from tests.support import Account, create_project
from tests.ui.conftest import Browsers
from tests.ui.helpers import open_ready, put_file, wait_text


async def test_restore_an_old_version_from_the_history_panel(
    api: httpx.AsyncClient, people: Browsers, owner: Account
) -> None:
    pid = (await create_project(api, owner, name="history"))["id"]
    await put_file(api, owner, pid, "poem.txt", "roses are red\n")
    await put_file(api, owner, pid, "poem.txt", "roses are blue\n")
    page = await people.signed_in(owner, f"/projects/{pid}/files/poem.txt")
    await open_ready(page)
    await wait_text(page, lambda text: text == "roses are blue\n")

    await page.get_by_role("tab", name="History").click()
    versions = page.get_by_role("list", name="Versions")
    await expect(versions.locator("li")).to_have_count(2)
    await page.get_by_role("button", name="Diff of version 1 with the latest").click()
    diff = page.get_by_role("dialog").get_by_label("Diff")
    await expect(diff).to_contain_text("-roses are red")
    await expect(diff).to_contain_text("+roses are blue")
    await page.get_by_role("button", name="Restore v1").click()
    await page.get_by_role("dialog").get_by_role("button", name="Restore").click()

    # The restore is a new version, and the open editor shows it at once.
    await wait_text(page, lambda text: text == "roses are red\n")
    await expect(versions.locator("li")).to_have_count(3)
    history = await api.get(f"/api/v1/projects/{pid}/history?path=poem.txt", headers=owner.headers)
    assert [v["version"] for v in history.json()["items"]] == [3, 2, 1]
    read = await api.get(f"/api/v1/projects/{pid}/files/poem.txt", headers=owner.headers)
    assert read.json()["content"] == "roses are red\n"
