"""Who may reach which preview: the preview of a Host header, the one-time tickets of the API,
the signed session in each preview's cookie, the re-checks of membership, sign-out and the
container (answers kept at most `RECHECK_S`), and the grants the agent accepts.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import jwt
from temporalio.client import Client as TemporalClient

from agent.grants import PREVIEW_AUDIENCE, agent_key, mint, preview_key
from agent.proxy import Limits, http_client
from store import projects, users
from store.db import create_pool
from store.ephemeral import Ephemeral, open_ephemeral
from vaporform.config import Config
from vaporform.container_client import ContainerClient, ContainerUnavailable
from web.blueprints.previews import TICKET_AUDIENCE, TICKET_PREFIX
from web.revocation import REVOKED_PREFIX
from workflows.containers.contract import ContainerStatus
from workflows.containers.names import Status

RECHECK_S = 1.0
COOKIE_PREFIX = "vf_preview_"
_CACHE_MAX = 4096


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Session:
    preview_id: str
    user_id: str
    project_id: str
    container_id: str
    port: int
    jti: str


@dataclass(frozen=True, slots=True)
class Target:
    host_port: int
    agent_url: str


def host_pattern(url_template: str) -> re.Pattern[str]:
    """Host headers of previews: the template's host with 32 hex digits for `{id}`."""
    netloc = urlsplit(url_template.replace("{id}", "previewid")).netloc.lower()
    return re.compile("^" + re.escape(netloc).replace("previewid", "([0-9a-f]{32})") + "$")


def cookie_name(preview_id: str) -> str:
    return COOKIE_PREFIX + preview_id[:12]


class Previews:
    """The preview origin's clients and its short-lived answers."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.limits = Limits(
            max_body_bytes=config.previews.max_body_bytes,
            max_response_bytes=config.previews.max_response_bytes,
            timeout_s=config.previews.timeout_s,
            max_websocket_message_bytes=config.previews.max_websocket_message_bytes,
        )
        self.session_key = preview_key(config)
        self.grant_key = agent_key(config)
        self.hosts = host_pattern(config.previews.url)
        self.secure = config.previews.url.startswith("https://")
        self.pool: asyncpg.Pool | None = None
        self.ephemeral: Ephemeral | None = None
        self.temporal: TemporalClient | None = None
        self.containers: ContainerClient | None = None
        self.http: httpx.AsyncClient | None = None
        self._access: dict[tuple[str, ...], tuple[float, Refused | None]] = {}
        self._status: dict[str, tuple[float, ContainerStatus]] = {}

    async def start(self) -> None:
        config = self.config
        self.pool = await create_pool(config.database_url, min_size=1, max_size=5)
        self.ephemeral = open_ephemeral(config.redis_url, config.redis_prefix)
        self.temporal = await TemporalClient.connect(
            config.temporal_address, namespace=config.temporal_namespace, lazy=True
        )
        self.containers = ContainerClient.from_settings(
            self.temporal, config.task_queue, config.containers
        )
        self.http = http_client(self.limits)

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()
        if self.ephemeral is not None:
            await self.ephemeral.close()
        if self.pool is not None:
            await self.pool.close()

    # -- who is asking -------------------------------------------------------------------

    def preview_of_host(self, host: str | None) -> str:
        matched = self.hosts.match((host or "").lower())
        if matched is None:
            raise Refused(404, "no such preview")
        return matched.group(1)

    def sign(self, session: Session, expires_at: int) -> str:
        claims = {
            "pv": session.preview_id,
            "sub": session.user_id,
            "pid": session.project_id,
            "cid": session.container_id,
            "port": session.port,
            "jti": session.jti,
            "exp": expires_at,
            "aud": PREVIEW_AUDIENCE,
        }
        return jwt.encode(claims, self.session_key, algorithm="HS256")

    def session(self, cookies: Any, preview_id: str) -> Session:
        raw = cookies.get(cookie_name(preview_id))
        if not raw:
            raise Refused(401, "open this preview from the IDE first")
        try:
            claims = jwt.decode(
                raw,
                self.session_key,
                algorithms=["HS256"],
                audience=PREVIEW_AUDIENCE,
                options={"require": ["exp", "aud", "sub", "jti"]},
            )
            found = Session(
                preview_id=str(claims["pv"]),
                user_id=str(claims["sub"]),
                project_id=str(claims["pid"]),
                container_id=str(claims["cid"]),
                port=int(claims["port"]),
                jti=str(claims["jti"]),
            )
        except (jwt.PyJWTError, KeyError, TypeError, ValueError):
            raise Refused(401, "this preview's session ended: open it again from the IDE") from None
        if found.preview_id != preview_id:
            raise Refused(401, "open this preview from the IDE first")
        return found

    async def ticket(self, raw: str) -> dict[str, Any]:
        """The claims of a ticket of `POST .../previews`, the first time it is shown."""
        try:
            data: dict[str, Any] = jwt.decode(
                raw,
                self.session_key,
                algorithms=["HS256"],
                audience=TICKET_AUDIENCE,
                options={"require": ["exp", "aud", "tid"]},
            )
        except jwt.PyJWTError:
            data = {}
        assert self.ephemeral is not None
        if not data or (await self.ephemeral.hit(TICKET_PREFIX + str(data["tid"]), 60))[0] != 1:
            raise Refused(401, "this link was used or has expired: open the preview again")
        return data

    async def member(self, user_id: str, project_id: str) -> None:
        assert self.pool is not None
        async with self.pool.acquire() as conn:
            uid, pid = uuid.UUID(user_id), uuid.UUID(project_id)
            if not await users.is_active(conn, uid):
                raise Refused(401, "this account is disabled")
            if await projects.for_member(conn, pid, uid) is None:
                raise Refused(404, "no such preview")

    async def status(self, project_id: str) -> ContainerStatus:
        now = time.monotonic()
        cached = self._status.get(project_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        assert self.containers is not None
        try:
            found = await self.containers.status(project_id)
        except ContainerUnavailable as exc:
            raise Refused(503, "the preview is unavailable, retry later") from exc
        self._remember(self._status, project_id, (now + RECHECK_S, found))
        return found

    async def check(self, session: Session) -> Target:
        """Still allowed (cached for RECHECK_S), and where the preview's port is now."""
        key = (session.user_id, session.project_id, session.jti)
        now = time.monotonic()
        cached = self._access.get(key)
        if cached is None or cached[0] <= now:
            refused: Refused | None = None
            try:
                assert self.ephemeral is not None
                if await self.ephemeral.exists(REVOKED_PREFIX + session.jti):
                    raise Refused(401, "you signed out: open this preview again from the IDE")
                await self.member(session.user_id, session.project_id)
            except Refused as exc:
                refused = exc
            self._remember(self._access, key, (now + RECHECK_S, refused))
        elif cached[1] is not None:
            refused = cached[1]
        else:
            refused = None
        if refused is not None:
            raise refused
        status = await self.status(session.project_id)
        host_port = status.ports.get(str(session.port))
        if (
            status.status != Status.RUNNING
            or status.container_id != session.container_id
            or host_port is None
        ):
            raise Refused(410, "this preview closed: its container stopped")
        agent = status.agent_url or self.config.agent.url_for(status.docker_queue)
        return Target(host_port=host_port, agent_url=agent)

    @staticmethod
    def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[key] = value

    def grant(self, session: Session, target: Target) -> str:
        return mint(
            self.grant_key,
            issuer=self.config.jwt.issuer,
            user_id=session.user_id,
            project_id=session.project_id,
            container_id=session.container_id,
            purpose="preview",
            port=target.host_port,
            ttl_s=self.config.agent.grant_ttl_s,
        )
