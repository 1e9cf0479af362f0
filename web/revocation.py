"""Open sockets keep their access only while it holds; tokens only while their user does.

A collaboration or terminal socket is authorised once, at its handshake. What made it valid can
stop holding while it is open: the user is removed from the project or given another role, the
access token it was opened with (directly, or through a ticket minted from it) is revoked, the
project is deleted, the account is disabled or deleted. Every open socket registers a `Watch`
here, and watches are re-checked against PostgreSQL (membership, role, account) and the
revocation list in the ephemeral store:

* at once when a change is announced (`Revocation.changed`, called by the route after its
  transaction commits): this node re-checks the watches the change names and publishes an
  event on the broker channel `access`, where every other node does the same (milliseconds);
* every `Config.access_recheck_s` (1 s), all of this node's watches in one query: the backstop
  for an event that was lost (pub/sub is at-most-once), a change made where nothing announces
  it (SQL, a store function) and a socket that registered just after an event went by.

A watch whose access is gone is revoked (the socket closes with `ACCESS_REVOKED_CLOSE_CODE`);
one whose role changed hears the new role (the collaboration socket downgrades or upgrades, a
terminal closes when its user is no longer an editor). Re-checks run one at a time, so their
answers are applied in the order they were read.

The same component answers "does this token's user still exist, enabled?" for every
authenticated request (web/auth.py), from a cache whose entries are at most `ACTIVE_TTL_S` old
and are dropped by the same events.

Event (JSON): `{"node", "project_id"?, "user_id"?, "jti"?}`: re-check the watches that match
every field given (project + user: a membership; project: the project; user: the account;
jti: a token).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Iterable
from uuid import UUID

import asyncpg
from quart import Quart, current_app

from collab import channels
from collab.broker import Broker, Subscription, open_broker
from store import projects, users
from store.ephemeral import Ephemeral
from web.services import services

log = logging.getLogger("vaporform.web.revocation")

ACCESS_REVOKED_CLOSE_CODE = 4003
# `revoked:<jti>` in the ephemeral store: an access token that must not be accepted any more.
REVOKED_PREFIX = "revoked:"
# With the default re-check interval (Config.access_recheck_s, 1 s), both bounds keep "at most
# 2 s" with room for a re-check's query on a busy node.
ACTIVE_TTL_S = 1.0
ACTIVE_CACHE_MAX = 65_536
EXTENSION_KEY = "vaporform.revocation"

EVENT_FIELDS = ("project_id", "user_id", "jti")
# Marks an event whose change needs no re-check: `{"project_id", "deleted": "project"}`.
DELETED = "deleted"


class Watch:
    """One open socket's grant: who, in which project, opened with which token, as what."""

    def __init__(
        self,
        owner: Revocation,
        *,
        user_id: UUID,
        project_id: UUID,
        jti: str,
        role: str,
        on_revoke: Callable[[str], None],
        on_role: Callable[[str], None],
    ) -> None:
        self.user_id = user_id
        self.project_id = project_id
        self.jti = jti
        self.role = role
        self._owner = owner
        self._on_revoke = on_revoke
        self._on_role = on_role
        self.open = True

    def close(self) -> None:
        """The socket ended: stop watching it."""
        if self.open:
            self.open = False
            self._owner.forget(self)

    def matches(self, event: dict[str, str]) -> bool:
        mine = {"project_id": str(self.project_id), "user_id": str(self.user_id), "jti": self.jti}
        return all(mine[key] == value for key, value in event.items())

    def revoke(self, reason: str) -> None:
        if self.open:
            self.close()
            self._on_revoke(reason)

    def role_changed(self, role: str) -> None:
        if self.open and role != self.role:
            self.role = role
            self._on_role(role)


class Revocation:
    def __init__(
        self,
        pool: asyncpg.Pool,
        ephemeral: Ephemeral,
        broker: Broker,
        *,
        node_id: str | None = None,
        recheck_s: float = 1.0,
    ) -> None:
        self._pool = pool
        self._ephemeral = ephemeral
        self._broker = broker
        self.node_id = node_id or uuid.uuid4().hex[:12]
        self._recheck_s = max(recheck_s, 0.05)  # 0 would spin
        self._watches: set[Watch] = set()
        self._pending: set[Watch] = set()
        self._wake = asyncio.Event()
        self._active: dict[UUID, tuple[users.Standing, float]] = {}
        # Bumped by every account event: a lookup that started before one is not cached.
        self._generation = 0
        self._subscription: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._listen()), loop.create_task(self._run())]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None
        await self._broker.close()

    # -- sockets -------------------------------------------------------------------------

    def watch(
        self,
        *,
        user_id: UUID,
        project_id: UUID,
        jti: str,
        role: str,
        on_revoke: Callable[[str], None],
        on_role: Callable[[str], None],
    ) -> Watch:
        """Watch an accepted socket until `Watch.close`. `on_revoke(reason)` must close it;
        `on_role(role)` applies a new role. Both are called on the event loop, never block."""
        found = Watch(
            self,
            user_id=user_id,
            project_id=project_id,
            jti=jti,
            role=role,
            on_revoke=on_revoke,
            on_role=on_role,
        )
        self._watches.add(found)
        # A change committed between the handshake's check and now was announced before this
        # watch could hear it: check once more, now.
        self._queue([found])
        return found

    def forget(self, watch: Watch) -> None:
        self._watches.discard(watch)
        self._pending.discard(watch)

    def _queue(self, watches: Iterable[Watch]) -> None:
        self._pending.update(watches)
        self._wake.set()

    async def changed(
        self, *, project_id: UUID | None = None, user_id: UUID | None = None, jti: str | None = None
    ) -> None:
        """Announce a committed change of access: re-check what it names here and on every
        node. Never fails the caller: an event that cannot be published is caught up by the
        periodic re-check."""
        given = {"project_id": project_id, "user_id": user_id, "jti": jti}
        event = {key: str(value) for key, value in given.items() if value is not None}
        self._apply(event)
        await self._publish(event)

    async def project_deleted(self, project_id: UUID) -> None:
        """The project's deletion is committed: its sockets close here at once, without the
        re-check's query, and on the other nodes as soon as they hear it. A re-check could lose
        the race with the deletion workflow stopping the container, whose terminals would then
        end as if the container had simply stopped."""
        self._close_project(str(project_id))
        await self._publish({"project_id": str(project_id), DELETED: "project"})

    async def _publish(self, event: dict[str, str]) -> None:
        try:
            await self._broker.publish(
                channels.ACCESS, json.dumps({**event, "node": self.node_id}).encode()
            )
        except Exception:
            log.warning("an access change could not be published", exc_info=True)

    def _close_project(self, project_id: str) -> None:
        for watch in [w for w in self._watches if str(w.project_id) == project_id]:
            try:
                watch.revoke("the project was deleted")
            except Exception:
                log.exception("closing a socket of a deleted project failed")

    def _on_event(self, data: bytes) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            log.warning("bad access event", extra={"channel": channels.ACCESS})
            return
        if not isinstance(message, dict) or message.get("node") == self.node_id:
            return
        if message.get(DELETED) == "project" and message.get("project_id"):
            self._close_project(str(message["project_id"]))
            return
        self._apply({k: str(message[k]) for k in EVENT_FIELDS if message.get(k) is not None})

    def _apply(self, event: dict[str, str]) -> None:
        if not event:
            return
        if "user_id" in event:
            self._generation += 1
            with contextlib.suppress(ValueError):
                self._active.pop(UUID(event["user_id"]), None)
        matching = [w for w in self._watches if w.matches(event)]
        if matching:
            self._queue(matching)

    async def _listen(self) -> None:
        """Subscribe to the events of other nodes, retrying while the broker is unreachable
        (meanwhile the periodic re-check still holds)."""
        delay = 0.5
        while True:
            try:
                self._subscription = await self._broker.subscribe(channels.ACCESS, self._on_event)
                return
            except Exception:
                log.warning("cannot subscribe to access events; retrying", exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _run(self) -> None:
        next_sweep = time.monotonic() + self._recheck_s
        failing = False
        while True:
            left = next_sweep - time.monotonic()
            if left > 0 and not self._pending:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), left)
            self._wake.clear()
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self._recheck_s
                self._pending.update(self._watches)
            batch = [w for w in self._pending if w.open]
            self._pending.clear()
            if not batch:
                continue
            try:
                await self.recheck(batch)
                failing = False
            except Exception:
                # PostgreSQL or Redis is unreachable: the next sweep tries everything again.
                if not failing:
                    log.warning("re-checking open sockets failed", exc_info=True)
                failing = True

    async def recheck(self, batch: list[Watch]) -> None:
        """Apply what PostgreSQL and the revocation list say about each watch, now."""
        pairs = {(w.project_id, w.user_id) for w in batch}
        async with self._pool.acquire() as conn:
            found = await projects.standings(conn, pairs)
        revoked = await self._ephemeral.exists_many({REVOKED_PREFIX + w.jti for w in batch})
        for watch in batch:
            standing = found.get((watch.project_id, watch.user_id))
            try:
                if REVOKED_PREFIX + watch.jti in revoked:
                    watch.revoke("the token of this connection was revoked")
                elif standing is None or not standing.active:
                    watch.revoke("the account is disabled or deleted")
                elif not standing.project:
                    watch.revoke("the project was deleted")
                elif standing.role is None:
                    watch.revoke("removed from the project")
                else:
                    watch.role_changed(standing.role)
            except Exception:
                log.exception("applying an access change failed")

    # -- requests ------------------------------------------------------------------------

    async def user_active(self, user_id: UUID) -> bool:
        """True when the user exists and is enabled (as of at most `ACTIVE_TTL_S` ago)."""
        return (await self._standing(user_id)).active

    async def user_requires_mfa(self, user_id: UUID) -> bool:
        """Whether an admin requires MFA of the user: read with `user_active`, so a request
        that asked that first costs nothing more."""
        return (await self._standing(user_id)).mfa_required

    async def _standing(self, user_id: UUID) -> users.Standing:
        now = time.monotonic()
        cached = self._active.get(user_id)
        if cached is not None and now - cached[1] < ACTIVE_TTL_S:
            return cached[0]
        generation = self._generation
        async with self._pool.acquire() as conn:
            found = await users.standing(conn, user_id)
        if generation == self._generation:
            if len(self._active) >= ACTIVE_CACHE_MAX:
                self._active.clear()
            self._active[user_id] = (found, now)
        return found


def revocations() -> Revocation:
    found: Revocation | None = current_app.extensions.get(EXTENSION_KEY)
    if found is None:
        raise RuntimeError("revocation is not started: serve the app or use app.test_app()")
    return found


def init_revocation(app: Quart) -> None:
    """Start the component when serving starts (after the services), stop it before they
    close."""

    @app.while_serving
    async def _serve() -> AsyncGenerator[None, None]:
        found = services()
        config = found.config
        revocation = Revocation(
            found.pool,
            found.ephemeral,
            open_broker(config.redis_url, config.redis_prefix),
            recheck_s=config.access_recheck_s,
        )
        await revocation.start()
        app.extensions[EXTENSION_KEY] = revocation
        try:
            yield
        finally:
            app.extensions.pop(EXTENSION_KEY, None)
            await revocation.close()
