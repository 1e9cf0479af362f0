"""The API's side of the workspace mirror: committed paths to the agent of the container's host.

The API keeps no workspace. After a commit, when the project's container runs (or is being
started), the agent its status names (`ContainerStatus.agent_url`, else the one configured for
its Docker queue) is asked, with a single-use `workspace` grant, to bring those paths into the
workspace; it answers what the workspace refused, which the API answers as `409
workspace_conflict`. Where no container runs nothing is asked: the agent hears of the change
from its announcement, and a container about to start reconciles its workspace first. Any
failure here (Temporal or the agent not answering) leaves the change to those ways too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from uuid import UUID

import httpx

from agent.grants import HEADER, agent_key, mint
from files.workspace import WorkspaceConflict
from vaporform.config import Config
from vaporform.container_client import ContainerClient
from workflows.containers.contract import ContainerStatus
from workflows.containers.names import Status

log = logging.getLogger("vaporform.files")

ROUTE = "/v1/workspace/sync"
# Past this many paths the agent reconciles the whole workspace instead of each of them.
MAX_PATHS = 1000
# A container is asked about while it runs, and while it starts: its workspace may already be
# reconciled for the start, so a change committed meanwhile must reach it too.
SERVED = frozenset({Status.RUNNING, Status.PROVISIONING})
# How long a container found running is taken to run on without asking again. Safe when stale:
# a container that stopped meanwhile still has its workspace on that host, which the agent
# brings in step all the same. "Not running" is never remembered: a container just started
# must get the next write at once.
RUNNING_TTL_S = 5.0


class AgentWorkspaceSync:
    """`FileSystem.workspace_sync` of the API (files/mirror.py `WorkspaceSync`)."""

    def __init__(
        self,
        containers: ContainerClient,
        config: Config,
        *,
        status_timeout_s: float = 2.0,
        timeout_s: float = 300.0,
    ) -> None:
        self._containers = containers
        self._agents = config.agent
        self._key = agent_key(config)
        self._issuer = config.jwt.issuer
        self._status_timeout_s = status_timeout_s
        self._running_since: dict[str, tuple[float, ContainerStatus]] = {}
        # An archive of thousands of files is written out before the answer: a long read.
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=5.0), trust_env=False
        )

    async def __call__(self, project_id: UUID, paths: Sequence[str]) -> list[WorkspaceConflict]:
        pid = str(project_id)
        try:
            status = self._remembered(pid) or await asyncio.wait_for(
                self._running(pid), self._status_timeout_s
            )
        except Exception as exc:  # the agent applies it from the announcement instead
            log.warning("no container status to sync a workspace (%s)", exc, extra={"project": pid})
            return []
        if status is None or status.status not in SERVED:
            return []
        url = status.agent_url or self._agents.url_for(status.docker_queue)
        grant = mint(
            self._key,
            issuer=self._issuer,
            user_id="api",
            project_id=pid,
            container_id=status.container_id or "",
            purpose="workspace",
            ttl_s=self._agents.grant_ttl_s,
        )
        body = {"paths": list(paths) if len(paths) <= MAX_PATHS else None}
        try:
            answer = await self._http.post(url + ROUTE, json=body, headers={HEADER: grant})
        except httpx.HTTPError as exc:
            log.warning("the agent did not sync a workspace (%s)", exc, extra={"project": pid})
            return []
        if answer.status_code != 200:
            log.warning(
                "the agent refused a workspace sync",
                extra={"project": pid, "status": answer.status_code, "body": answer.text[:200]},
            )
            return []
        return [
            WorkspaceConflict(str(item["path"]), str(item["kind"]))
            for item in answer.json().get("conflicts", [])
        ]

    async def _running(self, project_id: str) -> ContainerStatus | None:
        """The status of the project's container while its workflow runs, else None."""
        status = await self._containers.running_status(project_id)
        if status is not None and status.status in SERVED:
            now = time.monotonic()
            if len(self._running_since) > 10_000:
                self._running_since = {
                    pid: seen
                    for pid, seen in self._running_since.items()
                    if now - seen[0] < RUNNING_TTL_S
                }
            self._running_since[project_id] = (now, status)
        return status

    def _remembered(self, project_id: str) -> ContainerStatus | None:
        seen = self._running_since.get(project_id)
        if seen is None or time.monotonic() - seen[0] >= RUNNING_TTL_S:
            return None
        return seen[1]

    async def close(self) -> None:
        await self._http.aclose()
