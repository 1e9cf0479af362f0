"""Watch the workspaces of this machine and report what programs changed in them.

Runs in the agent of the Docker host (agent/workspaces.py), beside the engine whose containers
write into the workspaces. Each batch of changes is grouped by project and handed on; the agent
reconciles those paths (files/mirror.py), which imports them as versions by the author
`container`.

The workspaces belong to hostile programs, so this is inotify driven directly (Linux only,
through ctypes) rather than through a general-purpose watcher: those follow symbolic links
when they add their recursive watches, and one `ln -s / /workspace/h` would have them watch
the whole host. Here folders are found with `os.fwalk(follow_symlinks=False)` and each watch
is added on `/proc/self/fd/<n>` of a descriptor that walk opened, so a watch always lands on a
folder inside the workspace, whatever is swapped in by name meanwhile. Links and special files
are reported by name like any change; the importer refuses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import struct
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from files.workspace import TMP_PREFIX

log = logging.getLogger("vaporform.watch")

# (project id, changed paths); None means "scan the whole workspace".
OnChange = Callable[[str, list[str] | None], Awaitable[None]]

# A project's folders each take one inotify watch, and watches are a per-user kernel budget:
# past this many, a project's further folders are left unwatched until the next full scan.
MAX_WATCHES_PER_PROJECT = 10_000
QUIET_S = 0.05  # a batch ends after this long without events ...
MAX_BATCH_S = 0.3  # ... or this long after its first event

_IN_MODIFY = 0x002
_IN_ATTRIB = 0x004
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_FROM = 0x040
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_IN_Q_OVERFLOW = 0x4000
_IN_IGNORED = 0x8000
_IN_ONLYDIR = 0x0100_0000
_IN_EXCL_UNLINK = 0x0400_0000
_IN_ISDIR = 0x4000_0000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_MASK = (
    _IN_MODIFY
    | _IN_ATTRIB
    | _IN_CLOSE_WRITE
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
    | _IN_CREATE
    | _IN_DELETE
    | _IN_DELETE_SELF
    | _IN_MOVE_SELF
    | _IN_ONLYDIR
    | _IN_EXCL_UNLINK
)
_EVENT = struct.Struct("iIII")


class _Inotify:
    """One inotify instance: watches by folder, events as (folder, name, mask)."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._rm = libc.inotify_rm_watch
        self._rm.argtypes = [ctypes.c_int, ctypes.c_int]
        self.fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.folders: dict[int, str] = {}  # watch descriptor -> folder relative to the root
        self.per_project: dict[str, int] = {}

    def watch(self, dir_fd: int, folder: str) -> None:
        project = folder.split("/", 1)[0]
        if folder and self.per_project.get(project, 0) >= MAX_WATCHES_PER_PROJECT:
            return
        wd = self._add(self.fd, f"/proc/self/fd/{dir_fd}".encode(), _MASK)
        if wd < 0:
            code = ctypes.get_errno()
            if code not in (errno.ENOENT, errno.ENOTDIR):
                log.warning("cannot watch a folder", extra={"folder": folder, "errno": code})
            return
        if wd not in self.folders and folder:
            self.per_project[project] = self.per_project.get(project, 0) + 1
        self.folders[wd] = folder

    def forget(self, wd: int) -> None:
        folder = self.folders.pop(wd, None)
        if folder:
            project = folder.split("/", 1)[0]
            self.per_project[project] = max(0, self.per_project.get(project, 1) - 1)

    def forget_under(self, folder: str) -> None:
        for wd, watched in list(self.folders.items()):
            if watched == folder or watched.startswith(folder + "/"):
                self._rm(self.fd, wd)  # the kernel answers with IN_IGNORED, which forgets it

    def read(self) -> list[tuple[str | None, str, int]]:
        """Every pending event as (folder or None when unknown, name, mask)."""
        events: list[tuple[str | None, str, int]] = []
        while True:
            try:
                data = os.read(self.fd, 256 * 1024)
            except BlockingIOError:
                return events
            self._parse(data, events)

    def _parse(self, data: bytes, events: list[tuple[str | None, str, int]]) -> None:
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            offset += _EVENT.size
            name = data[offset : offset + length].split(b"\0", 1)[0].decode("utf-8", "replace")
            offset += length
            events.append((self.folders.get(wd), name, mask))
            if mask & _IN_IGNORED:
                self.forget(wd)

    def close(self) -> None:
        os.close(self.fd)


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _watch_tree(notify: _Inotify, root_fd: int, folder: str) -> list[str]:
    """Watch `folder` (relative to the root) and every folder below it; the files found.

    Each level is opened without following links; `os.fwalk` checks that what it opened is
    the folder it listed, so a link swapped in mid-walk is neither entered nor watched.
    """
    found: list[str] = []
    fd = root_fd
    opened: list[int] = []
    try:
        for segment in folder.split("/") if folder else []:
            fd = os.open(segment, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            opened.append(fd)
        notify.watch(fd, folder)
        for sub, _dirs, names, sub_fd in os.fwalk(".", dir_fd=fd, follow_symlinks=False):
            relative = folder if sub == "." else _join(folder, sub.removeprefix("./"))
            if sub != ".":
                notify.watch(sub_fd, relative)
            found.extend(_join(relative, name) for name in names)
    except OSError:
        pass  # gone, or replaced by a link or a file: nothing to watch there
    finally:
        for each in opened:
            os.close(each)
    return found


def _project_of(path: str) -> tuple[str, str] | None:
    """(project id, path inside its workspace), or None for what is not a project's file."""
    head, _, rest = path.partition("/")
    if not rest or not _is_uuid(head) or rest.rsplit("/", 1)[-1].startswith(TMP_PREFIX):
        return None
    return head, rest


class _Batch:
    def __init__(self) -> None:
        self.paths: dict[str, set[str]] = {}
        self.full: set[str] = set()

    def add(self, path: str) -> None:
        found = _project_of(path)
        if found is not None:
            self.paths.setdefault(found[0], set()).add(found[1])

    def scan(self, project_id: str) -> None:
        self.full.add(project_id)

    def __bool__(self) -> bool:
        return bool(self.paths or self.full)


def _handle(notify: _Inotify, root_fd: int, batch: _Batch) -> None:
    for folder, name, mask in notify.read():
        if mask & _IN_Q_OVERFLOW:
            for project in notify.per_project:
                batch.scan(project)
            continue
        if folder is None or not name:
            continue
        path = _join(folder, name)
        if not mask & _IN_ISDIR:
            batch.add(path)
            continue
        if not folder:  # a project's workspace folder appeared or went away
            if _is_uuid(name) and mask & (_IN_CREATE | _IN_MOVED_TO):
                _watch_tree(notify, root_fd, name)
                batch.scan(name)
            continue
        if mask & (_IN_CREATE | _IN_MOVED_TO):
            # Files made in it before the watch was in place raise no events of their own.
            for found in _watch_tree(notify, root_fd, path):
                batch.add(found)
            if mask & _IN_MOVED_TO:
                batch.scan(path.split("/", 1)[0])
        elif mask & _IN_MOVED_FROM:
            # Its files moved with it: the old paths are gone, the watches' names are stale.
            notify.forget_under(path)
            batch.scan(path.split("/", 1)[0])


async def _report(on_change: OnChange, project_id: str, paths: list[str] | None) -> None:
    try:
        await on_change(project_id, paths)
    except Exception:  # keep watching; the next change or the next full scan catches up
        log.exception("could not report workspace changes", extra={"project": project_id})


async def _flush(on_change: OnChange, batch: _Batch) -> None:
    for project_id in sorted(batch.full):
        await _report(on_change, project_id, None)
    for project_id, paths in sorted(batch.paths.items()):
        if project_id not in batch.full:
            await _report(on_change, project_id, sorted(paths))


async def watch_workspaces(
    root: Path, on_change: OnChange, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    """Report changes until `stop` is set; `ready` is set once the watch is in place.

    Changes made while nothing watched (the agent was down) are caught by one full scan of
    every workspace as soon as the watch is in place.
    """
    root.mkdir(parents=True, exist_ok=True)
    loop = asyncio.get_running_loop()
    notify = _Inotify()
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    woken = asyncio.Event()

    def wake() -> None:
        # One wake-up per drain: a level-triggered reader would spin while a batch reports.
        loop.remove_reader(notify.fd)
        woken.set()

    def arm() -> None:
        loop.add_reader(notify.fd, wake)

    arm()
    try:
        await asyncio.to_thread(_watch_tree, notify, root_fd, "")
        if ready is not None:
            ready.set()
        first = _Batch()
        for name in await asyncio.to_thread(os.listdir, root_fd):
            if _is_uuid(name):
                first.scan(name)
        await _flush(on_change, first)
        stopping = asyncio.create_task(stop.wait())
        while not stop.is_set():
            waking = asyncio.create_task(woken.wait())
            await asyncio.wait({waking, stopping}, return_when=asyncio.FIRST_COMPLETED)
            waking.cancel()
            if stop.is_set():
                break
            batch = _Batch()
            deadline = loop.time() + MAX_BATCH_S
            while True:
                woken.clear()
                _handle(notify, root_fd, batch)
                arm()
                left = deadline - loop.time()
                if left <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), min(QUIET_S, left))
                    continue
                break
            if batch:
                await _flush(on_change, batch)
        stopping.cancel()
    finally:
        loop.remove_reader(notify.fd)
        notify.close()
        os.close(root_fd)


def _is_uuid(name: str) -> bool:
    try:
        return str(uuid.UUID(name)) == name
    except ValueError:
        return False
