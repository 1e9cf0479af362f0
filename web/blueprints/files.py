"""Files: tree, read, write, delete, move, history, diff, restore, search and archives.

Request and response models: web/blueprints/files_schemas.py."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

from quart import Blueprint, Response, request
from quart_schema import document_querystring, document_response, validate_request

from collab.ot import utf16_len
from files.archive import ArchiveError, ArchiveLimits, archive_pieces, read_archive
from files.model import FileContent
from files.paths import InvalidPath, normalize_prefix
from files.service import FileSystem
from web import audit
from web.access import caller_project
from web.auth import require_auth
from web.blueprints.files_schemas import (
    DiffOut,
    DiffQuery,
    FileList,
    FileOut,
    FileWrite,
    HistoryOut,
    ImportOut,
    ListQuery,
    MoveIn,
    MoveOut,
    PathQuery,
    ReadQuery,
    RestoreIn,
    SearchOut,
    SearchQuery,
    WriteOut,
)
from web.errors import APIError, not_found
from web.limits import body_limit
from web.openapi import (
    document_errors,
    document_no_content,
    document_raw_request,
    document_raw_response,
)
from web.services import services

blueprint = Blueprint("files", __name__, url_prefix="/api/v1/projects/<project_id>")
PREVIEW_CHARS = 300

EDITOR = (403, "`forbidden`: needs the editor role")
BAD_PATH = (400, "`invalid_path` (`details.reason`)")
UNREADABLE = (500, "`blob_unreadable`: a blob key is missing from the configuration")


def _fs() -> FileSystem:
    return services().files


def _optional_int(name: str, minimum: int = 0) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if not re.fullmatch(r"\d{1,9}", raw) or int(raw) < minimum:
        raise APIError(
            400, "validation_error", f"{name!r} must be an integer of at least {minimum}"
        )
    return int(raw)


def _required_int(name: str, minimum: int = 0) -> int:
    value = _optional_int(name, minimum)
    if value is None:
        raise APIError(400, "validation_error", f"the query parameter {name!r} is required")
    return value


def _str_arg(name: str) -> str:
    raw = request.args.get(name)
    if not raw:
        raise APIError(400, "validation_error", f"the query parameter {name!r} is required")
    return raw


def _content_out(found: FileContent) -> dict[str, Any]:
    text = found.text
    return {
        "path": found.path,
        "content": text if text is not None else base64.b64encode(found.content).decode(),
        "encoding": "utf-8" if text is not None else "base64",
        "version": found.version,
        "language": found.language,
        "size": found.size,
        "sha256": found.sha256,
        "updated_at": found.updated_at.isoformat(),
    }


@blueprint.get("/files")
@require_auth
@document_querystring(ListQuery)
@document_response(FileList)
@document_errors((400, "`invalid_path`: a bad prefix"))
async def list_files(project_id: str) -> dict[str, Any]:
    project, _ = await caller_project(project_id)
    try:
        prefix = normalize_prefix(request.args.get("prefix", ""))
    except InvalidPath as exc:
        raise APIError(
            400, "invalid_path", f"invalid prefix: {exc.reason}", details=exc.limits
        ) from None
    rows = await _fs().listing(project.id, prefix)
    return {"items": [row.listing() for row in rows]}


@blueprint.get("/files/<path:path>")
@require_auth
@document_querystring(ReadQuery)
@document_response(FileOut)
@document_errors(BAD_PATH, (400, "`validation_error`: a bad version"), UNREADABLE)
async def read_file(project_id: str, path: str) -> dict[str, Any]:
    project, _ = await caller_project(project_id)
    version = _optional_int("version", minimum=1)
    found = await _fs().read(project.id, path, version)
    if found is None:
        raise not_found("file" if version is None else "file version")
    return _content_out(found)


@blueprint.put("/files/<path:path>")
@require_auth
@body_limit("max_file_bytes")
@validate_request(FileWrite)
@document_response(WriteOut, 201)
@document_response(WriteOut, 200)
@document_errors(
    BAD_PATH,
    (400, "`invalid_base64`; `invalid_encoding` (lone surrogates); `quota_exceeded`"),
    EDITOR,
    (
        409,
        "`version_conflict` (`details.current_version`) when `base_version` is not current; "
        "`too_many_files`; `path_conflict`; `workspace_conflict` (the version was saved)",
    ),
    (413, "the limit is VAPORFORM_MAX_FILE_BYTES"),
)
async def write_file(project_id: str, path: str, data: FileWrite) -> tuple[dict[str, Any], int]:
    project, caller = await caller_project(project_id, "editor")
    if data.encoding == "base64":
        try:
            content = base64.b64decode(data.content, validate=True)
        except (binascii.Error, ValueError):
            raise APIError(400, "invalid_base64", "content is not valid base64") from None
    else:
        content = data.content.encode("utf-8", errors="surrogatepass")
        if any(0xD800 <= ord(c) <= 0xDFFF for c in data.content):
            raise APIError(400, "invalid_encoding", "content contains lone surrogates")
    result = await _fs().write(
        project.id,
        path,
        content,
        author_id=caller.user_id,
        message=data.message,
        base_version=data.base_version,
        audit=audit.entry("file.written", actor_id=caller.user_id, project_id=project.id),
    )
    return {"path": result.path, "version": result.version}, 201 if result.created else 200


@blueprint.delete("/files/<path:path>")
@require_auth
@document_no_content("Deleted (a soft delete: the history stays)")
@document_errors(BAD_PATH, EDITOR, (409, "`workspace_conflict`"))
async def delete_file(project_id: str, path: str) -> tuple[str, int]:
    project, caller = await caller_project(project_id, "editor")
    await _fs().delete(
        project.id,
        path,
        author_id=caller.user_id,
        audit=audit.entry("file.deleted", actor_id=caller.user_id, project_id=project.id),
    )
    return "", 204


@blueprint.post("/fs/move")
@require_auth
@validate_request(MoveIn)
@document_response(MoveOut)
@document_errors(BAD_PATH, EDITOR, (409, "`path_conflict`; `workspace_conflict`"))
async def move(project_id: str, data: MoveIn) -> dict[str, Any]:
    project, caller = await caller_project(project_id, "editor")
    pairs = await _fs().move(
        project.id,
        data.source,
        data.target,
        author_id=caller.user_id,
        audit=audit.entry(
            "file.moved", actor_id=caller.user_id, project_id=project.id, target=data.source
        ),
    )
    return {"moved": [{"from": old, "to": new} for old, new in pairs]}


@blueprint.get("/history")
@require_auth
@document_querystring(PathQuery)
@document_response(HistoryOut)
@document_errors(BAD_PATH, (400, "`validation_error`: no path"))
async def history(project_id: str) -> dict[str, Any]:
    project, _ = await caller_project(project_id)
    versions = await _fs().history(project.id, _str_arg("path"))
    if versions is None:
        raise not_found("file")
    return {"items": [v.public() for v in versions]}


@blueprint.get("/diff")
@require_auth
@document_querystring(DiffQuery)
@document_response(DiffOut)
@document_errors(BAD_PATH, (400, "`validation_error`: a bad path, from or to"), UNREADABLE)
async def diff(project_id: str) -> dict[str, Any]:
    project, _ = await caller_project(project_id)
    path = _str_arg("path")
    old, new = _required_int("from", minimum=1), _required_int("to", minimum=1)
    return {"diff": await _fs().diff(project.id, path, old, new)}


@blueprint.post("/restore")
@require_auth
@validate_request(RestoreIn)
@document_response(WriteOut)
@document_errors(BAD_PATH, EDITOR, (409, "`too_many_files`; `workspace_conflict`"), UNREADABLE)
async def restore(project_id: str, data: RestoreIn) -> dict[str, Any]:
    project, caller = await caller_project(project_id, "editor")
    result = await _fs().restore(
        project.id,
        data.path,
        data.version,
        author_id=caller.user_id,
        audit=audit.entry(
            "file.restored",
            actor_id=caller.user_id,
            project_id=project.id,
            details={"restored_version": data.version},
        ),
    )
    return {"path": result.path, "version": result.version}


def glob_to_regex(glob: str) -> str:
    """A path glob (`*` within a folder, `**` across folders, `?`) as a POSIX regex."""
    out, i = [], 0
    while i < len(glob):
        char = glob[i]
        if glob.startswith("**/", i):
            out.append("(.*/)?")
            i += 3
            continue
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append({"*": "[^/]*", "?": "[^/]"}.get(char) or re.escape(char))
        i += 1
    return "^" + "".join(out) + "$"


@blueprint.get("/search")
@require_auth
@document_querystring(SearchQuery)
@document_response(SearchOut)
@document_errors((400, "`validation_error`; `invalid_regex`; `search_timeout`: narrow it down"))
async def search(project_id: str) -> dict[str, Any]:
    project, _ = await caller_project(project_id)
    query = _str_arg("q")
    if len(query) > 1000:
        raise APIError(400, "validation_error", "'q' is longer than 1000 characters")
    regex = request.args.get("regex", "false").lower()
    if regex not in ("true", "false", "1", "0"):
        raise APIError(400, "validation_error", "'regex' must be true or false")
    glob = request.args.get("glob") or None
    hits = await _fs().search(
        project.id,
        query,
        regex=regex in ("true", "1"),
        path_regex=glob_to_regex(glob) if glob else None,
    )
    return {
        "items": [
            {
                "path": hit.path,
                "line": hit.line,
                # Columns count UTF-16 code units, like every position in the protocol.
                "column": utf16_len(hit.preview[: hit.column - 1]) + 1,
                "preview": hit.preview[:PREVIEW_CHARS],
            }
            for hit in hits
        ]
    }


@blueprint.get("/archive")
@require_auth
@document_raw_response("application/gzip", "The project's live files as a .tar.gz")
@document_errors(UNREADABLE)
async def export_archive(project_id: str) -> Response:
    project, _ = await caller_project(project_id)
    fs = _fs()
    rows = await fs.listing(project.id)
    # Made while it is sent, never in a temporary file: with a blob key set, no plaintext
    # reaches the disk. The first piece is made before answering, so a blob that cannot be
    # read (a missing key) is a JSON error rather than a cut-off download.
    pieces = archive_pieces(rows, fs.blobs)
    first = await asyncio.to_thread(next, pieces, b"")

    async def stream() -> AsyncIterator[bytes]:
        try:
            piece = first
            while piece:
                yield piece
                piece = await asyncio.to_thread(next, pieces, b"")
        finally:
            # Still running in its thread when the client went away: it ends with the thread.
            with contextlib.suppress(ValueError):
                pieces.close()

    response = Response(stream(), mimetype="application/gzip")
    response.headers["Content-Disposition"] = f'attachment; filename="{project.id}.tar.gz"'
    return response


@blueprint.post("/archive")
@require_auth
@body_limit("max_archive_bytes")
@document_raw_request("application/gzip", "a .tar.gz; each regular file becomes a version")
@document_response(ImportOut)
@document_errors(
    (400, "`invalid_archive` (`details.entry`); `invalid_path`; `quota_exceeded`"),
    EDITOR,
    (409, "`too_many_files`; `path_conflict`; `workspace_conflict`"),
    (413, "the limit is VAPORFORM_MAX_ARCHIVE_BYTES"),
)
async def import_archive(project_id: str) -> dict[str, Any]:
    project, caller = await caller_project(project_id, "editor")
    config = services().config
    data = await request.get_data(as_text=False)
    assert isinstance(data, bytes)
    limits = ArchiveLimits(
        max_entries=config.max_archive_entries,
        max_total_bytes=config.max_archive_bytes * 8,
        max_file_bytes=config.max_file_bytes,
    )
    try:
        items = await asyncio.to_thread(read_archive, data, limits)
    except ArchiveError as exc:
        raise APIError(400, exc.code, exc.message, details=dict(exc.details)) from None
    results = await _fs().write_many(
        project.id,
        items,
        author_id=caller.user_id,
        message="imported from an archive",
        audit=audit.entry("file.imported", actor_id=caller.user_id, project_id=project.id),
    )
    return {"files": [{"path": r.path, "version": r.version} for r in results]}
