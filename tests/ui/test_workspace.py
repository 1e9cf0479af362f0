"""The workspace's file operations, search, quick open and shortcuts, in the browser."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import httpx
from playwright.async_api import expect

from tests.support import Account, create_project
from tests.ui.conftest import Browsers
from tests.ui.helpers import editor, open_ready, put_file, wait_text


async def listed(api: httpx.AsyncClient, who: Account, pid: str) -> list[str]:
    response = await api.get(f"/api/v1/projects/{pid}/files", headers=who.headers)
    return sorted(f["path"] for f in response.json()["items"])


async def test_create_rename_move_delete_upload_and_download(
    api: httpx.AsyncClient, people: Browsers, owner: Account, tmp_path: Path
) -> None:
    pid = (await create_project(api, owner, name="tree"))["id"]
    await put_file(api, owner, pid, "src/keep.py", "x = 1\n")
    page = await people.signed_in(owner, f"/projects/{pid}")
    tree = page.get_by_test_id("file-tree")
    await expect(tree.get_by_text("keep.py")).to_be_visible()

    # Create: the new file opens in an editor.
    await page.get_by_role("button", name="New file").first.click()
    await page.get_by_label("Path (folders are made as needed)").fill("notes/todo.md")
    await page.get_by_role("button", name="Create").click()
    await open_ready(page)
    await expect(page).to_have_url(re.compile(r"/files/notes/todo\.md$"))

    # Rename/move with the dialog; the open tab follows the file.
    await tree.get_by_role("button", name="Rename or move todo.md").click()
    await page.get_by_label("New path").fill("docs/todo.md")
    await page.get_by_role("dialog").get_by_role("button", name="Move", exact=True).click()
    await expect(tree.get_by_text("docs", exact=True)).to_be_visible()
    await expect(page).to_have_url(re.compile(r"/files/docs/todo\.md$"))

    # Move by dragging a file onto a folder.
    await tree.locator("[data-path='src/keep.py']").drag_to(tree.locator("[data-folder='docs']"))
    await expect(tree.locator("[data-path='docs/keep.py']")).to_be_visible()

    # Upload a text file and a binary one.
    (tmp_path / "hello.txt").write_text("hello\n")
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)))
    await page.locator("input[type=file]").set_input_files(
        [str(tmp_path / "hello.txt"), str(tmp_path / "blob.bin")]
    )
    await expect(tree.locator("[data-path='blob.bin']")).to_be_visible()
    read = await api.get(f"/api/v1/projects/{pid}/files/blob.bin", headers=owner.headers)
    assert read.json()["encoding"] == "base64"

    # Delete (with confirmation).
    await tree.get_by_role("button", name="Delete hello.txt").click()
    await page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    await expect(tree.locator("[data-path='hello.txt']")).to_have_count(0)
    assert await listed(api, owner, pid) == ["blob.bin", "docs/keep.py", "docs/todo.md"]

    # Download the project as a .tar.gz.
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Download the project as .tar.gz").click()
    download = await download_info.value
    target = tmp_path / "project.tar.gz"
    await download.save_as(target)
    with tarfile.open(fileobj=io.BytesIO(target.read_bytes()), mode="r:gz") as archive:
        assert sorted(archive.getnames()) == ["blob.bin", "docs/keep.py", "docs/todo.md"]


async def test_search_jumps_to_the_line_and_quick_open_and_save(
    api: httpx.AsyncClient, people: Browsers, owner: Account
) -> None:
    pid = (await create_project(api, owner, name="search"))["id"]
    await put_file(api, owner, pid, "a.py", "one\ntwo\nthree needle here\nfour\n")
    await put_file(api, owner, pid, "lib/b.js", "const x = 1;\n")
    page = await people.signed_in(owner, f"/projects/{pid}")
    await expect(page.get_by_test_id("file-tree").get_by_text("a.py")).to_be_visible()

    await page.keyboard.press("Control+Shift+F")
    await page.get_by_test_id("search-input").fill("needle")
    await page.get_by_role("button", name="a.py line 3").click()
    await open_ready(page)
    await expect(page.locator(".statusbar")).to_contain_text("a.py · Ln 3, Col 7")

    await page.keyboard.press("Control+p")
    await page.get_by_test_id("quick-open-input").fill("bjs")
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"/files/lib/b\.js$"))
    await wait_text(page, lambda text: text == "const x = 1;\n")
    await editor(page).locator(".cm-content").click()
    await page.keyboard.press("Control+s")
    await expect(page.locator("#toast")).to_contain_text("Saved")
