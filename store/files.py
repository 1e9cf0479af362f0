"""Queries on `files` and `file_versions`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from store.db import Conn


@dataclass(frozen=True, slots=True)
class FileRow:
    id: UUID
    project_id: UUID
    path: str
    encoding: str
    language: str | None
    mode: int
    size: int
    sha256: str
    version: int
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    mirror_stat: str | None = None

    def listing(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size": self.size,
            "language": self.language,
            "version": self.version,
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class VersionRow:
    file_id: UUID
    version: int
    path: str
    sha256: str
    size: int
    author_id: UUID | None
    author_kind: str
    message: str
    created_at: datetime

    def public(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "path": self.path,
            "author_id": None if self.author_id is None else str(self.author_id),
            "author": self.author_kind,
            "message": self.message,
            "size": self.size,
            "sha256": self.sha256,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class SearchHit:
    path: str
    line: int
    column: int  # 1-based, in code points as PostgreSQL counts them
    preview: str


_FILE = (
    "id, project_id, path, encoding, language, mode, size, sha256, version, created_at, "
    "updated_at, deleted_at, mirror_stat"
)


def _file(row: Any) -> FileRow | None:
    return None if row is None else FileRow(**dict(row))


async def get(
    conn: Conn, project_id: UUID, path: str, *, for_update: bool = False
) -> FileRow | None:
    """The file at `path`, deleted or not."""
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT {_FILE} FROM files WHERE project_id = $1 AND path = $2{lock}", project_id, path
    )
    return _file(row)


async def insert_placeholder(conn: Conn, project_id: UUID, path: str) -> FileRow | None:
    """Claim `path` for a new file (version 0, deleted); None when the row already exists."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO files (project_id, path, encoding, size, sha256, version, deleted_at)
        VALUES ($1, $2, 'utf-8', 0, '', 0, now())
        ON CONFLICT (project_id, path) DO NOTHING
        RETURNING {_FILE}
        """,
        project_id,
        path,
    )
    return _file(row)


async def set_current(
    conn: Conn,
    file_id: UUID,
    *,
    version: int,
    encoding: str,
    language: str | None,
    size: int,
    sha256: str,
    text: str | None,
) -> None:
    await conn.execute(
        """
        UPDATE files SET version = $2, encoding = $3, language = $4, size = $5, sha256 = $6,
                         content = $7, updated_at = now(), deleted_at = NULL
        WHERE id = $1
        """,
        file_id,
        version,
        encoding,
        language,
        size,
        sha256,
        text,
    )


async def add_version(
    conn: Conn,
    *,
    file_id: UUID,
    version: int,
    path: str,
    sha256: str,
    size: int,
    author_id: UUID | None,
    author_kind: str,
    message: str,
) -> None:
    await conn.execute(
        """
        INSERT INTO file_versions
            (file_id, version, path, sha256, size, author_id, author_kind, message)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        file_id,
        version,
        path,
        sha256,
        size,
        author_id,
        author_kind,
        message,
    )


async def set_mirror_stat(conn: Conn, project_id: UUID, stats: dict[str, str]) -> None:
    await conn.execute(
        """
        UPDATE files f SET mirror_stat = s.stat
        FROM unnest($2::text[], $3::text[]) AS s(path, stat)
        WHERE f.project_id = $1 AND f.path = s.path
        """,
        project_id,
        list(stats),
        list(stats.values()),
    )


async def mark_deleted(conn: Conn, file_id: UUID) -> None:
    await conn.execute(
        "UPDATE files SET deleted_at = now(), content = NULL, updated_at = now() WHERE id = $1",
        file_id,
    )


async def count_live(conn: Conn, project_id: UUID) -> int:
    count = await conn.fetchval(
        "SELECT count(*) FROM files WHERE project_id = $1 AND deleted_at IS NULL", project_id
    )
    return int(count)


async def live(conn: Conn, project_id: UUID, prefix: str = "") -> list[FileRow]:
    """Live files under `prefix` ('' for all), ordered by path."""
    rows = await conn.fetch(
        f"""
        SELECT {_FILE} FROM files
        WHERE project_id = $1 AND deleted_at IS NULL AND starts_with(path, $2)
        ORDER BY path
        """,
        project_id,
        prefix,
    )
    return [FileRow(**dict(r)) for r in rows]


async def version(conn: Conn, file_id: UUID, number: int) -> VersionRow | None:
    row = await conn.fetchrow(
        "SELECT * FROM file_versions WHERE file_id = $1 AND version = $2", file_id, number
    )
    return None if row is None else VersionRow(**dict(row))


async def history(conn: Conn, file_id: UUID) -> list[VersionRow]:
    rows = await conn.fetch(
        "SELECT * FROM file_versions WHERE file_id = $1 ORDER BY version DESC", file_id
    )
    return [VersionRow(**dict(r)) for r in rows]


async def rename(conn: Conn, file_id: UUID, new_path: str) -> None:
    await conn.execute(
        "UPDATE files SET path = $2, updated_at = now() WHERE id = $1", file_id, new_path
    )


async def delete_row(conn: Conn, file_id: UUID) -> None:
    await conn.execute("DELETE FROM files WHERE id = $1", file_id)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def search(
    conn: Conn,
    project_id: UUID,
    query: str,
    *,
    regex: bool,
    path_regex: str | None,
    limit: int,
    timeout_ms: int,
) -> list[SearchHit]:
    """Matching lines of live text files, ordered by path and line, at most `limit`.

    Files are filtered first (the trigram index serves substring search), then only the
    matching files are split into lines. A search running over `timeout_ms` is cancelled
    (asyncpg.QueryCanceledError).
    """
    if regex:
        # Newline-sensitive, so ^ and $ anchor at lines as they do in an editor's search.
        file_match = "regexp_like(f.content, $2, 'n')"
        line_match, column = "l.text ~ $2", "regexp_instr(l.text, $2)"
        needle = query
    else:
        file_match = "f.content LIKE '%' || $2 || '%'"
        line_match = "l.text LIKE '%' || $2 || '%'"
        column = "strpos(l.text, $5)"
        needle = _like_escape(query)
    async with conn.transaction():
        await conn.execute(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
        rows = await conn.fetch(
            f"""
            SELECT m.path, l.n AS line, {column} AS col, l.text AS preview
            FROM (
                SELECT f.path, f.content FROM files f
                WHERE f.project_id = $1 AND f.deleted_at IS NULL AND f.content IS NOT NULL
                  AND {file_match} AND ($3::text IS NULL OR f.path ~ $3)
                ORDER BY f.path LIMIT $4
            ) m
            CROSS JOIN LATERAL
                regexp_split_to_table(m.content, E'\\n') WITH ORDINALITY AS l(text, n)
            WHERE {line_match.replace("f.", "m.")}
            ORDER BY m.path, l.n
            LIMIT $4
            """,
            *([project_id, needle, path_regex, limit] + ([] if regex else [query])),
        )
    return [SearchHit(r["path"], int(r["line"]), int(r["col"]), r["preview"]) for r in rows]


async def referenced_digests(conn: Conn) -> set[str]:
    rows = await conn.fetch("SELECT DISTINCT sha256 FROM file_versions")
    return {r["sha256"] for r in rows}


async def prune_versions(conn: Conn, project_id: UUID, keep: int) -> int:
    """Delete all but the newest `keep` versions of each file of the project (never the current)."""
    status = await conn.execute(
        """
        DELETE FROM file_versions v USING files f
        WHERE v.file_id = f.id AND f.project_id = $1
          AND v.version <= f.version - $2
        """,
        project_id,
        keep,
    )
    return int(status.split()[-1])
