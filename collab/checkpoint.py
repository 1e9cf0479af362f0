"""Saving live text into the file system, and turning outside file changes into ops.

Invariant kept in ``collab_documents``: the file's content at ``file_version`` equals the
document's text at ``checkpoint_revision``. A checkpoint writes the live text as a new file
version with ``base_version=file_version``; when the file moved on meanwhile (a REST write,
the AI, the container, or another node's checkpoint) the write conflicts and the change is
*absorbed*: if the file's content is the text at some later revision (another node's
checkpoint) that pair is simply recorded; otherwise the difference between the file at
``file_version`` and now becomes an op based on ``checkpoint_revision``, which the submit
path transforms past every op since, so no keystroke and no outside edit is lost.
"""

from __future__ import annotations

import logging
from uuid import UUID

import asyncpg

from collab import ot
from collab.errors import CollabError
from collab.files import DocumentFiles, FileConflict
from collab.submission import Submission
from collab.submit import Committer
from store import collab as store

log = logging.getLogger("vaporform.collab")

ATTEMPTS = 4


def diff_op(old: str, new: str) -> ot.Op:
    """One op turning `old` into `new`: keep the common prefix and suffix, replace the middle."""
    if old == new:
        return ot.normalize([ot.utf16_len(old)]) if old else []
    limit = min(len(old), len(new))
    start = 0
    while start < limit and old[start] == new[start]:
        start += 1
    end = 0
    while end < limit - start and old[-1 - end] == new[-1 - end]:
        end += 1
    op: ot.Op = [
        ot.utf16_len(old[:start]),
        new[start : len(new) - end],
        -ot.utf16_len(old[start : len(old) - end]),
        ot.utf16_len(old[len(old) - end :]),
    ]
    return ot.normalize(op)


async def checkpoint(
    pool: asyncpg.Pool, files: DocumentFiles, committer: Committer, *, reason: str
) -> int | None:
    """Write the live text as a new file version; the version, None when nothing to do."""
    doc = committer.doc
    async with doc.checkpoint_lock:
        row = await _row(pool, doc.id)
        base = row.file_version
        for attempt in range(ATTEMPTS):
            text, revision = doc.text, doc.revision
            if row.checkpoint_revision >= revision and base == row.file_version:
                doc.checkpointed_revision = max(doc.checkpointed_revision, row.checkpoint_revision)
                return None
            try:
                version = await files.write(
                    doc.project_id,
                    doc.path,
                    text,
                    author_id=doc.last_author,
                    message=f"live edits up to revision {revision} ({reason})",
                    # The file changed again between merging an outside change and writing
                    # the result: the live text (which holds every merged change) wins; the
                    # lost outside version stays in the file's history.
                    base_version=None if attempt == ATTEMPTS - 1 else base,
                )
            except FileConflict:
                merged = await _absorb(pool, files, committer, row)
                if merged is None:
                    row = await _row(pool, doc.id)
                    base = row.file_version
                else:
                    base = merged
                continue
            async with pool.acquire() as conn:
                await store.record_checkpoint(conn, doc.id, revision=revision, file_version=version)
            doc.checkpointed_revision = revision
            return version
        return None


async def _row(pool: asyncpg.Pool, document_id: int) -> store.Document:
    async with pool.acquire() as conn:
        row = await store.document_by_id(conn, document_id)
    if row is None:
        raise CollabError("not_found", "the document no longer exists")
    return row


async def absorb(pool: asyncpg.Pool, files: DocumentFiles, committer: Committer) -> None:
    """Bring an outside change of the file into the live document (and the file up to date)."""
    doc = committer.doc
    async with doc.checkpoint_lock:
        async with pool.acquire() as conn:
            row = await store.document_by_id(conn, doc.id)
        if row is None:
            return
        current = await files.read(doc.project_id, doc.path)
        if current is None or current.version == row.file_version:
            return
        await _absorb(pool, files, committer, row)
    await checkpoint(pool, files, committer, reason="outside change merged")


async def _absorb(
    pool: asyncpg.Pool, files: DocumentFiles, committer: Committer, row: store.Document
) -> int | None:
    """Merge the file's current version; None when it was only recorded, else its version."""
    doc = committer.doc
    current = await files.read(doc.project_id, doc.path)
    base = await files.read(doc.project_id, doc.path, row.file_version)
    if current is None or base is None:
        raise CollabError("not_found", f"{doc.path} no longer exists", {"path": doc.path})
    # Another node's checkpoint (or a write of text we already have) is recorded, not merged.
    async with pool.acquire() as conn:
        since = await store.ops_since(conn, doc.id, row.checkpoint_revision)
    text = base.text
    matched = row.checkpoint_revision if text == current.text else None
    for op_row in since:
        if matched is not None:
            break
        text = ot.apply(text, op_row.op)
        if text == current.text:
            matched = op_row.revision
    if matched is not None:
        async with pool.acquire() as conn:
            await store.record_checkpoint(
                conn, doc.id, revision=matched, file_version=current.version
            )
        doc.checkpointed_revision = max(doc.checkpointed_revision, matched)
        return None
    outside = diff_op(base.text, current.text)
    # (client_key, seq) names this file version: two nodes absorbing it commit it once.
    await committer.submit(
        Submission(
            revision=row.checkpoint_revision,
            op=outside,
            client_key=f"files/{UUID(int=0)}",
            seq=current.version,
            user_id=None,
        )
    )
    return current.version
