"""The container panel's "Open preview": a one-time entry URL on the preview's own origin,
opened in a new tab (never inside the IDE page), showing what the container's port serves."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from playwright.async_api import Route, expect

from tests.support import Account, create_project
from tests.ui.conftest import Browsers


async def test_open_a_preview_of_a_published_port_in_a_new_tab(
    api: httpx.AsyncClient,
    people: Browsers,
    owner: Account,
    ui_docker_worker: bool,
    ui_previews: str,
) -> None:
    if not ui_docker_worker:
        pytest.skip("no Docker engine")
    pid = (await create_project(api, owner, name="site"))["id"]
    started = await api.post(
        f"/api/v1/projects/{pid}/container",
        json={"network": "bridge", "ports": [3000]},
        headers=owner.headers,
        timeout=90,
    )
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "running", started.text
    served = await api.post(
        f"/api/v1/projects/{pid}/container/exec",
        json={
            "command": [
                "sh",
                "-c",
                "cd /workspace && echo 'hello from the preview' > index.html"
                " && httpd -p 3000 -h /workspace",
            ],
            "timeout_s": 20,
        },
        headers=owner.headers,
    )
    assert served.status_code == 200, served.text
    assert served.json()["exit_code"] == 0, served.text
    try:
        page = await people.signed_in(owner, f"/projects/{pid}")
        await page.get_by_role("tab", name="Container").click()
        link = page.get_by_test_id("open-preview-3000")
        await expect(link).to_be_visible()

        # A refusal is shown in words (the route answered by hand: the port is published).
        async def refuse(route: Route) -> None:
            error = {
                "code": "port_not_published",
                "message": "the container does not publish port 3000",
                "details": {"port": 3000, "ports": []},
            }
            await route.fulfill(
                status=409, content_type="application/json", body=json.dumps({"error": error})
            )

        await page.route(f"**/api/v1/projects/{pid}/previews", refuse)
        await link.click()
        await expect(page.get_by_test_id("preview-error")).to_have_text(
            re.compile(r"^The container does not publish port 3000: start it again")
        )
        await page.unroute(f"**/api/v1/projects/{pid}/previews", refuse)

        def is_preview(response: object) -> bool:
            url: str = getattr(response, "url", "")
            return url.endswith(f"/api/v1/projects/{pid}/previews")

        async with (
            page.expect_response(is_preview) as answered,
            page.context.expect_page() as opened,
        ):
            await link.click()
        response = await answered.value
        assert response.status == 201
        body = await response.json()
        assert re.fullmatch(r"http://[0-9a-f]{32}\.preview\.localhost:\d+", body["origin"]), body
        assert body["url"].startswith(body["origin"] + "/p/enter?ticket=")
        preview = await opened.value
        # The entry URL traded its ticket for the preview's cookie and landed on `/`.
        await expect(preview.locator("body")).to_have_text("hello from the preview")
        assert preview.url == body["origin"] + "/"
        assert await preview.evaluate("() => window.opener") is None  # noopener
        await expect(page.get_by_test_id("preview-error")).to_be_empty()
        assert await page.locator("iframe").count() == 0  # never embedded in the IDE page
        # The IDE's own origin holds no cookie of the preview's.
        ide_cookies = await page.context.cookies(page.url)
        assert not [c for c in ide_cookies if c["name"].startswith("vf_preview")]
    finally:
        await api.post(f"/api/v1/projects/{pid}/container/stop", headers=owner.headers)
