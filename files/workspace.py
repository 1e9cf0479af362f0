"""A project's materialised working directory, and the only code that touches what is in it.

The directory mirrors the latest version of every file of the project; it is what the
project's container bind-mounts at `/workspace`, and changes made inside it are imported back
as new versions.

Everything below the workspace root belongs to a hostile program: any folder may be swapped
for a symbolic link, a FIFO or a device at any moment, even between two system calls of ours.
So no path inside a workspace is ever handed to the kernel as a string to resolve. Each
operation opens the root, then walks one segment at a time with `openat(..., O_NOFOLLOW |
O_DIRECTORY)` relative to the folder it already holds open, and acts on the last segment with
`*at` calls relative to that folder. A link, a device, a FIFO or a socket met on the way is a
`WorkspaceConflict`; the object is left where it is. Folders a program moves while we hold them
stay inside the workspace (a rename cannot cross the bind mount), so a held descriptor never
points outside it. Files are always new inodes (`O_CREAT | O_EXCL` under a random name, then
`rename`), so the mirror never writes through, or creates, a hard link.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

TMP_PREFIX = ".vf-tmp-"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def workspaces_root(data_dir: Path) -> Path:
    return data_dir / "workspaces"


def workspace_dir(data_dir: Path, project_id: UUID) -> Path:
    return workspaces_root(data_dir) / str(project_id)


def is_present(root: Path) -> bool:
    """Whether the workspace exists on this machine (its root is ours, not the program's)."""
    return root.is_dir()


class WorkspaceConflict(Exception):
    """Something a program put in the workspace stands where the mirror must act.

    `path` is the project path of the offending object (a prefix of the path acted on when a
    folder on the way is the problem); `kind` says what it is.
    """

    def __init__(self, path: str, kind: str) -> None:
        super().__init__(f"{path} is {kind} in the workspace")
        self.path = path
        self.kind = kind


def describe(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISREG(mode):
        return "a file"
    return "a special file"


def stat_key(info: os.stat_result) -> str:
    return f"{info.st_size}:{info.st_mtime_ns}"


def _lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _conflict_at(dir_fd: int, name: str, path: str) -> WorkspaceConflict:
    info = _lstat_at(dir_fd, name)
    return WorkspaceConflict(path, "gone" if info is None else describe(info.st_mode))


@contextlib.contextmanager
def _held(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def _open_root(root: Path, *, create: bool, uid: int | None) -> int:
    """The workspace root, opened. The folders above it are ours (the data dir); the root
    itself is the container's mount point, which a program inside cannot replace."""
    if create and not root.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        if uid is not None:
            os.chown(root, uid, uid, follow_symlinks=False)
    return os.open(root, _DIR_FLAGS)


def _open_parent(root_fd: int, path: str, *, create: bool, uid: int | None) -> tuple[int, str]:
    """Walk to the folder holding `path`'s last segment without following anything.

    Returns an open descriptor of that folder (the caller closes it) and the last segment.
    Raises FileNotFoundError for a missing folder when not creating, WorkspaceConflict for
    anything but a real folder on the way.
    """
    segments = path.split("/")
    fd = os.dup(root_fd)
    try:
        for depth, segment in enumerate(segments[:-1], start=1):
            try:
                child = os.open(segment, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(segment, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass  # made meanwhile: opened (and checked) below like any folder
                except FileNotFoundError:  # the folder we hold was deleted meanwhile
                    prefix = "/".join(segments[: depth - 1]) or segment
                    raise WorkspaceConflict(prefix, "removed while being written") from None
                try:
                    child = os.open(segment, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    prefix = "/".join(segments[:depth])
                    raise WorkspaceConflict(prefix, "removed while being written") from None
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise _conflict_at(fd, segment, "/".join(segments[:depth])) from None
                    raise
                if uid is not None:
                    os.fchown(child, uid, uid)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _conflict_at(fd, segment, "/".join(segments[:depth])) from None
                raise
            os.close(fd)
            fd = child
        return fd, segments[-1]
    except BaseException:
        os.close(fd)
        raise


def write_file(root: Path, path: str, content: bytes, uid: int | None) -> str:
    """Make `path` hold `content` (a new inode), creating folders on the way.

    Returns the written file's stat key. A folder, link or special file at `path` is a
    conflict and stays as it is.
    """
    with (
        _held(_open_root(root, create=True, uid=uid)) as root_fd,
        _held_parent(root_fd, path, create=True, uid=uid) as (dir_fd, name),
    ):
        found = _lstat_at(dir_fd, name)
        if found is not None and not stat.S_ISREG(found.st_mode):
            raise WorkspaceConflict(path, describe(found.st_mode))
        tmp = f"{TMP_PREFIX}{secrets.token_hex(8)}"
        try:
            fd = os.open(tmp, _CREATE_FLAGS, 0o644, dir_fd=dir_fd)
        except FileNotFoundError:
            raise _removed(path) from None
        try:
            with _held(fd):
                view = memoryview(content)
                while view:
                    view = view[os.write(fd, view) :]
                if uid is not None:
                    os.fchown(fd, uid, uid)
                key = stat_key(os.fstat(fd))
            # rename() never follows a link at the target: a link swapped in since the check
            # is replaced, not written through; a folder swapped in makes it fail.
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dir_fd)
            if isinstance(exc, OSError) and exc.errno in (errno.EISDIR, errno.ENOTEMPTY):
                raise _conflict_at(dir_fd, name, path) from None
            if isinstance(exc, FileNotFoundError):
                raise _removed(path) from None
            raise
        return key


def _removed(path: str) -> WorkspaceConflict:
    """The folder we held was deleted by a program while we wrote into it."""
    folder = path.rsplit("/", 1)[0] if "/" in path else path
    return WorkspaceConflict(folder, "removed while being written")


def remove_file(root: Path, path: str) -> None:
    """Remove the file at `path` if it is there; anything but a regular file is a conflict."""
    with _existing_parent(root, path) as parent:
        if parent is None:
            return
        _, dir_fd, name = parent
        found = _lstat_at(dir_fd, name)
        if found is None:
            return
        if not stat.S_ISREG(found.st_mode):
            raise WorkspaceConflict(path, describe(found.st_mode))
        try:
            # unlink() removes a link swapped in since the check, never its target.
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            return
        except IsADirectoryError:
            raise _conflict_at(dir_fd, name, path) from None


def move_file(root: Path, old: str, new: str, uid: int | None) -> bool:
    """Rename the file `old` to `new` inside the workspace. False when `old` is not there."""
    with _existing_parent(root, old) as source:
        if source is None:
            return False
        root_fd, src_fd, src_name = source
        found = _lstat_at(src_fd, src_name)
        if found is None:
            return False
        if not stat.S_ISREG(found.st_mode):
            raise WorkspaceConflict(old, describe(found.st_mode))
        with _held_parent(root_fd, new, create=True, uid=uid) as (dst_fd, dst_name):
            there = _lstat_at(dst_fd, dst_name)
            if there is not None and not stat.S_ISREG(there.st_mode):
                raise WorkspaceConflict(new, describe(there.st_mode))
            try:
                os.rename(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            except FileNotFoundError:
                return False
            except OSError as exc:
                if exc.errno in (errno.EISDIR, errno.ENOTEMPTY):
                    raise _conflict_at(dst_fd, dst_name, new) from None
                raise
        return True


def read_regular(
    root: Path, path: str, limit: int, known_stat: str | None
) -> tuple[bytes | None, str]:
    """The bytes of the regular file at `path` and its stat key, or (None, why).

    `why` is "missing" when nothing (or a plain file standing where a folder was) is there,
    "unchanged" when the stat key is still `known_stat`, else the reason it is not imported.
    """
    try:
        root_fd = _open_root(root, create=False, uid=None)
    except FileNotFoundError:
        return None, "missing"
    with _held(root_fd):
        try:
            dir_fd, name = _open_parent(root_fd, path, create=False, uid=None)
        except FileNotFoundError:
            return None, "missing"
        except WorkspaceConflict as exc:
            if exc.kind in ("a file", "gone"):  # a folder replaced by a file: ours is gone
                return None, "missing"
            return None, f"{exc.path} is {exc.kind}"
        with _held(dir_fd):
            info = _lstat_at(dir_fd, name)
            if info is None:
                return None, "missing"
            if not stat.S_ISREG(info.st_mode):
                return None, f"{describe(info.st_mode)}, not a file"
            if known_stat is not None and stat_key(info) == known_stat:
                return None, "unchanged"
            if info.st_size > limit:
                return None, f"larger than {limit} bytes"
            try:
                fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
            except FileNotFoundError:
                return None, "missing"
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    return None, "a symbolic link, not a file"
                raise
            with _held(fd):
                opened = os.fstat(fd)  # what was opened, not what was looked at
                if not stat.S_ISREG(opened.st_mode):
                    return None, f"{describe(opened.st_mode)}, not a file"
                chunks: list[bytes] = []
                size = 0
                while size <= limit:
                    chunk = os.read(fd, min(1 << 20, limit + 1 - size))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                if size > limit:
                    return None, f"larger than {limit} bytes"
                return b"".join(chunks), stat_key(os.fstat(fd))


def list_files(root: Path) -> list[str]:
    """Project paths of the regular files and other non-folders under `root`.

    `os.fwalk` walks by descriptor and never descends into a link, even one swapped in for a
    folder while it walks. Links and special files are listed (the reader refuses them, so
    they are reported, not imported); the mirror's own temporary files are not.
    """
    if not root.is_dir():
        return []
    found: list[str] = []
    for folder, _dirs, names, dir_fd in os.fwalk(root, follow_symlinks=False):
        relative = os.path.relpath(folder, root)
        for name in names:
            if name.startswith(TMP_PREFIX):
                continue
            found.append(name if relative == "." else f"{relative}/{name}")
        for name in _dirs:
            # A link to a folder shows up among the folders; report it like any link.
            info = _lstat_at(dir_fd, name)
            if info is not None and stat.S_ISLNK(info.st_mode):
                found.append(name if relative == "." else f"{relative}/{name}")
    return found


@contextlib.contextmanager
def _held_parent(
    root_fd: int, path: str, *, create: bool, uid: int | None
) -> Iterator[tuple[int, str]]:
    dir_fd, name = _open_parent(root_fd, path, create=create, uid=uid)
    with _held(dir_fd):
        yield dir_fd, name


@contextlib.contextmanager
def _existing_parent(root: Path, path: str) -> Iterator[tuple[int, int, str] | None]:
    """(root, folder holding `path`'s last segment, that segment), all held open; None when
    the root or a folder on the way does not exist (nothing to act on)."""
    try:
        root_fd = _open_root(root, create=False, uid=None)
    except FileNotFoundError:
        yield None
        return
    with _held(root_fd):
        try:
            dir_fd, name = _open_parent(root_fd, path, create=False, uid=None)
        except FileNotFoundError:
            yield None
            return
        with _held(dir_fd):
            yield root_fd, dir_fd, name
