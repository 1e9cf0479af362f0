"""File-count and size limits hold for every way in: writes, batches and workspace imports."""

from __future__ import annotations

import uuid
from dataclasses import replace

import httpx
import pytest

from files.errors import TooLarge, TooManyFiles
from files.factory import build_filesystem
from store import db
from tests.support import create_project, register
from vaporform.config import Config


async def test_file_count_limit(config: Config, http: httpx.AsyncClient) -> None:
    owner = await register(http)
    project_id = uuid.UUID((await create_project(http, owner))["id"])
    pool = await db.create_pool(config.database_url, min_size=1, max_size=2)
    try:
        fs = build_filesystem(replace(config, max_files_per_project=3, max_file_bytes=10), pool)
        await fs.write_many(project_id, [("a", b"1"), ("b", b"2")], author_id=None)
        with pytest.raises(TooManyFiles):
            await fs.write_many(project_id, [("c", b"3"), ("d", b"4")], author_id=None)
        assert [r.path for r in await fs.listing(project_id)] == ["a", "b"], "all or nothing"
        await fs.write(project_id, "c", b"3", author_id=None)
        await fs.write(project_id, "a", b"updated", author_id=None)  # updates are not new files
        with pytest.raises(TooLarge):
            await fs.write(project_id, "a", b"x" * 11, author_id=None)
        await fs.delete(project_id, "b", author_id=None)
        await fs.write(project_id, "d", b"4", author_id=None)  # a deleted file frees its place

        # Programs in the container meet the same limits.
        root = fs.workspace(project_id)
        (root / "e").write_bytes(b"5")
        (root / "big").write_bytes(b"y" * 11)
        report = await fs.sync_from_workspace(project_id)
        assert set(report.skipped) == {"e", "big"}
        assert "limit" in report.skipped["e"]
        assert sorted(r.path for r in await fs.listing(project_id)) == ["a", "c", "d"]
    finally:
        await pool.close()
