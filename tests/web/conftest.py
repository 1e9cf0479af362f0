"""Fixtures of the web tests: a pool on the run's database, for what only SQL can show (the
audit table refusing changes, a user made admin before any admin exists)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from store import db
from vaporform.config import Config


@pytest.fixture(scope="session")
async def pool(config: Config) -> AsyncIterator[asyncpg.Pool]:
    found = await db.create_pool(config.database_url, min_size=1, max_size=4)
    yield found
    await found.close()
