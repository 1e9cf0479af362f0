"""tar.gz export and import of a project's files.

Import is all-or-nothing: the archive is checked in full (entry types, paths through the one
path gate, counts and sizes, including the decompressed size, so a gzip bomb stops early)
before a single file is written.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Generator
from dataclasses import dataclass

from files.paths import InvalidPath, normalize_path
from store.blobs import BlobStore
from store.files import FileRow


class ArchiveError(ValueError):
    code = "invalid_archive"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    max_entries: int = 10_000
    max_total_bytes: int = 256 * 1024 * 1024
    max_file_bytes: int = 5 * 1024 * 1024


def read_archive(data: bytes, limits: ArchiveLimits) -> list[tuple[str, bytes]]:
    """The regular files of a tar.gz as (normalised path, content); ArchiveError otherwise."""
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")  # noqa: SIM115 - see with
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError(f"not a tar.gz archive: {exc}") from None
    found: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    total = 0
    with archive:
        try:
            for count, member in enumerate(archive, start=1):
                if count > limits.max_entries:
                    raise ArchiveError(
                        f"more than {limits.max_entries} entries", limit=limits.max_entries
                    )
                name = member.name.removeprefix("./")
                if member.isdir():
                    continue
                if not member.isfile():
                    kind = "link" if member.issym() or member.islnk() else "special file"
                    raise ArchiveError(f"{member.name!r} is a {kind}", entry=member.name)
                try:
                    path = normalize_path(name)
                except InvalidPath as exc:
                    error = ArchiveError(
                        f"{member.name!r}: {exc.reason}",
                        entry=member.name,
                        reason=exc.reason,
                        **exc.limits,
                    )
                    error.code = "invalid_path"  # the same answer as the path on any route
                    raise error from None
                if path in seen:
                    raise ArchiveError(f"{path!r} appears twice", entry=member.name)
                seen.add(path)
                if member.size > limits.max_file_bytes:
                    raise ArchiveError(
                        f"{path!r} is larger than {limits.max_file_bytes} bytes", entry=path
                    )
                total += member.size
                if total > limits.max_total_bytes:
                    raise ArchiveError(
                        f"the files add up to more than {limits.max_total_bytes} bytes",
                        limit=limits.max_total_bytes,
                    )
                extracted = archive.extractfile(member)
                assert extracted is not None
                found.append((path, extracted.read(limits.max_file_bytes + 1)))
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ArchiveError(f"the archive is damaged: {exc}") from None
    return found


class _Pieces:
    """Where the tar stream writes: what it wrote since the last `take`."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        piece = b"".join(self._parts)
        self._parts.clear()
        return piece


def archive_pieces(rows: list[FileRow], blobs: BlobStore) -> Generator[bytes, None, None]:
    """A tar.gz of the given files, made as it is sent: each content is read through the blob
    store (so encrypted blobs are decrypted in memory) one file at a time, and nothing of it is
    written to disk. Pieces are never empty."""
    sink = _Pieces()
    with tarfile.open(fileobj=sink, mode="w|gz") as archive:  # type: ignore[call-overload]
        for row in rows:
            content = blobs.get_sync(row.sha256)
            info = tarfile.TarInfo(row.path)
            info.size = len(content)
            info.mode = row.mode
            info.mtime = int(row.updated_at.timestamp())
            archive.addfile(info, io.BytesIO(content))
            if piece := sink.take():
                yield piece
    if piece := sink.take():
        yield piece
