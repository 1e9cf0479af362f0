"""One new version of one file: the step every write and every workspace import shares."""

from __future__ import annotations

from uuid import UUID

from files.budget import FileBudget
from files.errors import VersionConflict
from files.model import WriteResult, classify
from files.paths import language_of
from store import files
from store.db import Conn


async def write_version(
    conn: Conn,
    project_id: UUID,
    path: str,
    content: bytes,
    sha256: str,
    *,
    budget: FileBudget,
    max_files: int,
    author_id: UUID | None,
    author_kind: str,
    message: str,
    base_version: int | None,
) -> WriteResult:
    """Make `content` the file's current version, unless it already is.

    The caller holds the project's workspace lock and the GC lock (shared), has stored the
    blob `sha256`, and owns the transaction. A file that is not live counts against
    `max_files`; `base_version` (0: the file must not be live) is a compare-and-set.
    """
    row = await files.get(conn, project_id, path, for_update=True)
    if row is None:
        await files.insert_placeholder(conn, project_id, path)
        row = await files.get(conn, project_id, path, for_update=True)
        assert row is not None
    live = row.deleted_at is None
    current = row.version if live else 0
    if base_version is not None and base_version != current:
        raise VersionConflict(current)
    if live and row.sha256 == sha256:
        return WriteResult(path, row.version, created=False, changed=False)
    if not live:
        await budget.claim(conn, project_id, max_files)
    encoding, text = classify(content)
    number = row.version + 1
    await files.add_version(
        conn,
        file_id=row.id,
        version=number,
        path=path,
        sha256=sha256,
        size=len(content),
        author_id=author_id,
        author_kind=author_kind,
        message=message,
    )
    await files.set_current(
        conn,
        row.id,
        version=number,
        encoding=encoding,
        language=language_of(path),
        size=len(content),
        sha256=sha256,
        text=text,
    )
    return WriteResult(path, number, created=not live)
