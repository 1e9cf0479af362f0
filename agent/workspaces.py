"""The workspaces of this Docker host, kept in step with PostgreSQL and the blob store.

Every change reaches a workspace through one reconcile of the paths it names
(`FileSystem.reconcile_workspace`, files/mirror.py), which reads their current state: so a
change missed, delivered twice, late or out of order still converges. The ways in:

1. **the API's sync call** (`POST /v1/workspace/sync` with a `workspace` grant, agent/app.py)
   right after a commit, when the project's container runs: answered with what the workspace
   refused (the API's `409 workspace_conflict`);
2. **the project's files channel** (collab/channels.py), where the versioning workflow
   announces every committed change: followed for every workspace on this host, whether or not
   the call came;
3. **a full reconcile** of every workspace here when the agent starts (the watcher's first
   scan), and of one that appears;
4. **the watcher** (vaporform/workspace_watch.py): what programs in the containers change is
   imported by the same reconcile, and announced to the versioning workflow (origin
   `container`) by the file system's notifier.

Reconciles of one project run one at a time here (and under its exclusive workspace lock
across processes); those from the watcher and the channel are coalesced per project.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from temporalio.client import Client

from collab.broker import Broker, RedisBroker, Subscription
from collab.channels import files_channel
from files import workspace
from files.factory import build_filesystem
from files.model import ChangeEvent
from files.service import FileSystem, Notifier
from store import projects
from store.db import create_pool
from vaporform.config import Config
from vaporform.temporal_setup import signal_files_changed
from vaporform.workspace_watch import watch_workspaces

log = logging.getLogger("vaporform.agent")

# Connections of a lone agent: each reconcile holds one (its workspace lock) at a time.
AGENT_POOL_MAX = 8
# Reconciles from the watcher and the announcements at once, across projects: after a start,
# every workspace of the host is due, and they must leave connections to the sync calls (and,
# in the worker, to its activities).
BACKGROUND_AT_ONCE = 3
# After Redis refused a subscription, a project's next reconcile tries again once this is past.
FOLLOW_RETRY_S = 30.0


@dataclass
class _Project:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    paths: set[str] = field(default_factory=set)
    full: bool = False
    task: asyncio.Task[None] | None = None
    subscription: Subscription | None = None
    follow_failed_at: float | None = None


class HostWorkspaces:
    def __init__(self, files: FileSystem, broker: Broker | None) -> None:
        self.files = files
        self.broker = broker
        self._projects: dict[UUID, _Project] = {}
        self._stop = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._background = asyncio.Semaphore(BACKGROUND_AT_ONCE)
        self.ready = asyncio.Event()  # set once the watcher is in place

    async def start(self) -> None:
        root = workspace.workspaces_root(self.files.data_dir)
        self._watcher = asyncio.create_task(
            watch_workspaces(root, self._watched, self._stop, self.ready)
        )

    async def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            await self._watcher
        tasks = [p.task for p in self._projects.values() if p.task is not None]
        if tasks:
            # What is under way finishes (a reconcile is short); what is queued is caught up
            # by the next start's full reconcile.
            _, pending = await asyncio.wait(tasks, timeout=5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for project_id in list(self._projects):
            await self._unfollow(project_id)

    async def sync(
        self, project_id: UUID, paths: Sequence[str] | None
    ) -> list[workspace.WorkspaceConflict]:
        """The API's call: bring `paths` (None: all) into the workspace now, if it is here."""
        if not self._present(project_id):
            return []
        # Not followed from here: every workspace on the host is reconciled (and followed) by
        # the watcher's first scan or when it appears, and a call must not wait on Redis.
        project = self._projects.setdefault(project_id, _Project())
        async with project.lock:
            done = await self.files.reconcile_workspace(project_id, paths)
        return done.conflicts

    def changed(self, project_id: UUID, paths: Sequence[str] | None) -> None:
        """Reconcile `paths` (None: all) of the project soon, coalesced with what is pending."""
        if self._stop.is_set():
            return
        project = self._projects.setdefault(project_id, _Project())
        if paths is None:
            project.full = True
        else:
            project.paths.update(paths)
        if project.task is None or project.task.done():
            project.task = asyncio.create_task(self._drain(project_id, project))

    async def _watched(self, project_id: str, paths: list[str] | None) -> None:
        self.changed(UUID(project_id), paths)

    def _announced(self, project_id: UUID, raw: bytes) -> None:
        try:
            message = json.loads(raw)
            paths = [str(p) for p in message["paths"]]
        except (ValueError, KeyError, TypeError):
            return
        self.changed(project_id, paths)

    async def _drain(self, project_id: UUID, project: _Project) -> None:
        while (project.full or project.paths) and not self._stop.is_set():
            async with self._background:
                paths = None if project.full else sorted(project.paths)
                project.full, project.paths = False, set()
                try:
                    await self._reconcile(project_id, paths)
                except Exception:  # the next change, or the next start, catches up
                    log.exception(
                        "could not reconcile a workspace", extra={"project": str(project_id)}
                    )

    async def _reconcile(self, project_id: UUID, paths: list[str] | None) -> None:
        async with self.files.pool.acquire() as conn:
            live = await projects.is_live(conn, project_id)
        if not live or not self._present(project_id):
            # Deleted (its workspace is going away), or no workspace here: nothing to keep.
            await self._unfollow(project_id)
            return
        project = await self._follow(project_id)
        async with project.lock:
            await self.files.reconcile_workspace(project_id, paths)

    def _present(self, project_id: UUID) -> bool:
        return workspace.is_present(self.files.workspace(project_id))

    async def _follow(self, project_id: UUID) -> _Project:
        """Hear the project's announcements from now on (before reading its state)."""
        project = self._projects.setdefault(project_id, _Project())
        if project.subscription is not None or self.broker is None:
            return project
        failed = project.follow_failed_at
        if failed is not None and time.monotonic() - failed < FOLLOW_RETRY_S:
            return project
        try:
            project.subscription = await self.broker.subscribe(
                files_channel(project_id), lambda raw: self._announced(project_id, raw)
            )
            project.follow_failed_at = None
        except Exception:  # Redis unreachable: the other ways still work; tried again later
            project.follow_failed_at = time.monotonic()
            log.warning("cannot follow announcements", extra={"project": str(project_id)})
        return project

    async def _unfollow(self, project_id: UUID) -> None:
        project = self._projects.get(project_id)
        if project is not None and project.subscription is not None:
            subscription, project.subscription = project.subscription, None
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()


def container_changes(temporal: Client, task_queue: str) -> Notifier:
    """The notifier of a Docker host's file system: what the mirror imported goes to the
    project's versioning workflow, which refreshes its stats and tells the API nodes."""

    async def notify(event: ChangeEvent) -> None:
        await signal_files_changed(
            temporal, task_queue, str(event.project_id), list(event.paths), event.origin
        )

    return notify


async def open_workspaces(
    config: Config, files: FileSystem | None = None, temporal: Client | None = None
) -> tuple[HostWorkspaces, Callable[[], Awaitable[None]]]:
    """This host's workspaces, started, and what closes them. Alone (`vaporform agent`) the
    agent connects to PostgreSQL, the blob store and Temporal as the configuration says; in the
    worker it shares the worker's file system (`files`, whose notifier the worker sets)."""
    stack = contextlib.AsyncExitStack()
    try:
        if files is None:
            pool = await create_pool(config.database_url, min_size=1, max_size=AGENT_POOL_MAX)
            stack.push_async_callback(pool.close)
            if temporal is None:
                temporal = await Client.connect(
                    config.temporal_address, namespace=config.temporal_namespace, lazy=True
                )
            notifier = container_changes(temporal, config.task_queue)
            files = build_filesystem(config, pool, notifier=notifier)
        broker = None
        if config.redis_url:
            broker = RedisBroker(config.redis_url, prefix=config.redis_prefix)
            stack.push_async_callback(broker.close)
        host = HostWorkspaces(files, broker)
        await host.start()
        stack.push_async_callback(host.close)
    except BaseException:
        await stack.aclose()
        raise
    return host, stack.aclose
