"""Fixtures of the browser tests: the built bundle, Debian's chromium driven by Playwright, and
a real stack (API, worker, Temporal, PostgreSQL, Redis, the Docker engine and this host's agent
for terminals and previews; the preview origin, in process, for the tests that open one).

The bundle is built here when it is missing or older than its sources, so `pytest tests/ui`
works on a fresh clone that has Node (CI builds it before the tests anyway).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import docker
import docker.errors
import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
from temporalio.client import Client

from agent.serve import serve_agent
from collab.settings import CollabSettings
from files.factory import build_filesystem
from store import db
from tests.conftest import Server, api_client, free_port, serving
from tests.docker_cleanup import managed, remove_owned
from tests.support import Account, register, wait_until
from vaporform.config import Config
from vaporform.images import ensure_built
from web.preview_origin import serve_previews
from worker import build_docker_worker

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "web" / "ui"
STATIC = ROOT / "web" / "static"
CHROMIUM = os.environ.get("VAPORFORM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Generous for a 2-core machine shared with other test runs; every wait polls.
expect.set_options(timeout=20_000)


def bundle_is_stale() -> bool:
    manifest = STATIC / "manifest.json"
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    sources = [UI / "package-lock.json", UI / "build.mjs", *(UI / "src").rglob("*")]
    return any(p.stat().st_mtime > built for p in sources if p.is_file())


def build_bundle() -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is missing: apt-get install -y npm (the tests build web/ui themselves)")
    if not (UI / "node_modules" / ".package-lock.json").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=UI, check=True)
    subprocess.run([npm, "run", "build"], cwd=UI, check=True)


@pytest.fixture(scope="session")
def bundle() -> Path:
    if bundle_is_stale():
        build_bundle()
    return STATIC


@pytest.fixture(scope="session")
async def browser(bundle: Path) -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    async with async_playwright() as playwright:
        found = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield found
        await found.close()


FAST = CollabSettings(checkpoint_idle_s=0.5, checkpoint_every_ops=50, op_rate=500, op_burst=500)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient | None]:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException:
        yield None
        return
    yield client
    client.close()


@pytest.fixture(scope="session")
def ui_docker_queue(run_id: str) -> str:
    return f"docker-ui-{run_id}"


@pytest.fixture(scope="session")
def ui_config(
    config: Config, ui_docker_queue: str, docker_client: docker.DockerClient | None
) -> Config:
    image = config.containers.default_image
    if docker_client is not None:
        ensure_built(docker_client, "busybox", progress=lambda _: None)
        image = "vaporform/runtime-busybox:latest"
    return replace(
        config,
        collab=FAST,
        # This run's agent and preview origin, on free ports (browsers resolve *.localhost).
        agent=replace(config.agent, host="127.0.0.1", port=free_port()),
        previews=replace(
            config.previews,
            host="127.0.0.1",
            port=(preview_port := free_port()),
            url=f"http://{{id}}.preview.localhost:{preview_port}",
        ),
        containers=replace(
            config.containers,
            docker_queue=ui_docker_queue,
            default_image=image,
            health_timeout_s=15,
            pool_size=0,
        ),
    )


@pytest.fixture(scope="session")
async def ui_docker_worker(
    temporal_client: Client,
    docker_client: docker.DockerClient | None,
    ui_config: Config,
    database_url: str,
    ui_docker_queue: str,
) -> AsyncIterator[bool]:
    """A Docker worker on this suite's queue (False when the machine has no engine)."""
    if docker_client is None:
        yield False
        return
    before = {c.id for c in managed(docker_client)}
    pool = await db.create_pool(ui_config.database_url, min_size=1, max_size=3)
    files = build_filesystem(ui_config, pool)
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="ui-docker") as executor:
        async with build_docker_worker(
            temporal_client,
            docker_client,
            ui_config.data_dir,
            ui_docker_queue,
            executor,
            files,
        ):
            yield True
    await pool.close()
    await remove_owned(docker_client, database_url, ui_docker_queue, before)


async def _answers(url: str, status: int) -> bool:
    try:
        async with httpx.AsyncClient() as client:
            return (await client.get(url)).status_code == status
    except httpx.TransportError:
        return False


@pytest.fixture(scope="session")
async def ui_agent(
    ui_config: Config, docker_client: docker.DockerClient | None
) -> AsyncIterator[str | None]:
    """This Docker host's agent (terminals, preview relays); None without an engine."""
    if docker_client is None:
        yield None
        return
    stop = asyncio.Event()
    task = asyncio.create_task(serve_agent(ui_config, docker_client, stop, quiet=True))
    url = ui_config.agent.default_url
    try:
        await wait_until(lambda: _answers(url + "/healthz", 200), timeout=15, what="the agent")
        yield url
    finally:
        stop.set()
        await task


@pytest.fixture(scope="session")
async def ui_previews(ui_config: Config, ui_server: Server) -> AsyncIterator[str]:
    """The preview origin (`vaporform previews`, here in process): its listener's URL."""
    stop = asyncio.Event()
    task = asyncio.create_task(serve_previews(ui_config, stop, quiet=True))
    url = f"http://{ui_config.previews.host}:{ui_config.previews.port}"
    try:
        # It serves nothing on a host that names no preview: 404 means it is up.
        await wait_until(lambda: _answers(url + "/", 404), timeout=15, what="the preview origin")
        yield url
    finally:
        stop.set()
        await task


@pytest.fixture(scope="session")
async def ui_server(
    ui_config: Config,
    worker: None,
    ui_docker_worker: bool,
    ui_agent: str | None,
    bundle: Path,
) -> AsyncIterator[Server]:
    async with serving(ui_config) as found:
        yield found


@pytest.fixture
async def api(ui_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(ui_server) as client:
        yield client


class Browsers:
    """Browser contexts (one per person) opened by a test, all closed after it."""

    def __init__(self, browser: Browser, base_url: str) -> None:
        self.browser = browser
        self.base_url = base_url
        self.contexts: list[BrowserContext] = []

    async def page(self, base_url: str | None = None) -> Page:
        context = await self.browser.new_context(
            base_url=base_url or self.base_url, viewport={"width": 1280, "height": 720}
        )
        self.contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda error: print(f"page error: {error}"))
        return page

    async def signed_in(self, who: Account, path: str = "/", base_url: str | None = None) -> Page:
        """A new context signed in as `who` through the sign-in form, then at `path`."""
        page = await self.page(base_url)
        await sign_in(page, who, path)
        return page

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()


async def sign_in(page: Page, who: Account, path: str = "/") -> None:
    await page.goto(path)
    await page.get_by_test_id("login-email").fill(who.email)
    await page.get_by_test_id("login-password").fill(who.password)
    await page.get_by_test_id("login-submit").click()
    if path.startswith("/projects/"):
        await expect(page.get_by_test_id("file-tree")).to_be_visible()
    else:
        await expect(page.get_by_test_id("project-list")).to_be_visible()


@pytest.fixture
async def people(browser: Browser, ui_server: Server) -> AsyncIterator[Browsers]:
    found = Browsers(browser, ui_server.base_url)
    yield found
    await found.close()


@pytest.fixture
async def owner(api: httpx.AsyncClient) -> Account:
    return await register(api, "ada")
