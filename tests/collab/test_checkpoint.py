"""Checkpoints into the file system and outside changes merged back, over real PostgreSQL.

`MemoryFiles` stands in for the versioned file system (the port's in-process implementation);
the WebSocket tests cover the real one.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg
from hypothesis import given
from hypothesis import strategies as st

from collab import ot
from collab.checkpoint import absorb, checkpoint, diff_op
from collab.document import LiveDocument, load
from collab.files import MemoryFiles
from collab.settings import CollabSettings
from collab.submission import Submission
from collab.submit import Committer
from store import collab as store
from store.collab import OpRow
from tests.collab.conftest import make_project

texts = st.text(alphabet=st.sampled_from("ab\n😀中é"), max_size=30)


@given(texts, texts)
def test_diff_op_turns_old_into_new(old: str, new: str) -> None:
    assert ot.apply(old, diff_op(old, new)) == new


async def _nothing(doc: LiveDocument, rows: Sequence[OpRow]) -> None:
    return None


async def node(
    pool: asyncpg.Pool, files: MemoryFiles, project_id: uuid.UUID, path: str
) -> Committer:
    found = await files.read(project_id, path)
    assert found is not None
    async with pool.acquire() as conn:
        row = await store.get_document(conn, project_id, path) or await store.create_document(
            conn, project_id, path, text=found.text, file_version=found.version
        )
    doc = await load(pool, row, history_limit=100)
    return Committer(doc, pool, CollabSettings(), _nothing)


async def test_checkpoint_then_outside_change_is_merged(pool: asyncpg.Pool) -> None:
    files, project_id = MemoryFiles(), await make_project(pool)
    files.put(project_id, "f.txt", "one\ntwo\n")
    c = await node(pool, files, project_id, "f.txt")
    await c.submit(Submission(0, [8, "three\n"], "u/a", 1, None))
    assert await checkpoint(pool, files, c, reason="test") == 2
    assert await checkpoint(pool, files, c, reason="nothing new") is None
    # Someone edits the file (REST) while an edit is live but not yet checkpointed.
    await c.submit(Submission(1, [14, "four\n"], "u/a", 2, None))
    files.put(project_id, "f.txt", "zero\none\ntwo\nthree\n")
    await absorb(pool, files, c)
    merged = "zero\none\ntwo\nthree\nfour\n"
    assert c.doc.text == merged
    latest = await files.read(project_id, "f.txt")
    assert latest is not None
    assert latest.text == merged
    # Absorbing the same outside version again changes nothing.
    await absorb(pool, files, c)
    assert c.doc.text == merged
    assert len(files.versions[(project_id, "f.txt")]) == 4


async def test_two_nodes_checkpointing_write_one_version(pool: asyncpg.Pool) -> None:
    files, project_id = MemoryFiles(), await make_project(pool)
    files.put(project_id, "g.txt", "x")
    a = await node(pool, files, project_id, "g.txt")
    b = await node(pool, files, project_id, "g.txt")
    await a.submit(Submission(0, [1, "y"], "u/a", 1, None))
    await b.doc.catch_up(pool)
    assert await checkpoint(pool, files, a, reason="a") == 2
    # b's write conflicts, finds the file already holds its text and records that instead.
    assert await checkpoint(pool, files, b, reason="b") is None
    assert files.versions[(project_id, "g.txt")] == ["x", "xy"]
