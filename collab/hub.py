"""Live collaboration in one API process: project rooms, open documents, fan-out, checkpoints.

A ``Room`` is one project as this node sees it: the local sessions, the roster of every
participant on any node, and the documents open here. Rooms talk to the same room on other
nodes through the broker channel ``project:<id>``; every message carries the sending node's
id so a node ignores its own. Messages on that channel (JSON):

``op`` ``{path, rows: [{revision, op, client_key, seq, user_id}]}`` committed ops;
``cursor``, ``chat``, ``presence`` ``{participant}``, ``gone`` ``{session_id}``,
``roster`` ``{participants}`` (heartbeat), ``hello`` (a node opened the room: answer with a
roster). A room also listens on the file system's channel ``project:<id>:files``
(``collab.channels.files_channel``), where the versioning workflow announces every
file change, whoever made it: a live document of a changed path absorbs the change as an op.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Coroutine, Hashable, Sequence
from typing import Any, Protocol
from uuid import UUID

import asyncpg
import orjson
from opentelemetry import trace

from collab import checkpoint as checkpoints
from collab import instruments
from collab.broker import Broker, Subscription
from collab.channels import ai_jobs_channel, files_channel, room_channel
from collab.document import LiveDocument, load
from collab.errors import CollabError
from collab.fanout import Fanout
from collab.files import DocumentFiles
from collab.presence import Participant, Roster
from collab.protocol import ServerType, envelope
from collab.settings import CollabSettings
from collab.submit import Committer
from files.model import ChangeEvent
from store import collab as store
from store.collab import OpRow
from vaporform import metrics

log = logging.getLogger("vaporform.collab")

TICK_S = 0.25
CLIENT_TIMEOUT_CLOSE_CODE = 4000


class Peer(Protocol):
    """What a room needs from a connection (collab/session.py)."""

    session_id: str
    participant: Participant
    last_heard: float

    def offer(self, text: str, slot: Hashable | None = None) -> None: ...

    def kick(self, code: int, reason: str) -> None: ...

    def claim_ack(self, path: str, row: OpRow) -> str | None:
        """The ack to send when `row` is this peer's own op it is waiting for, else None."""
        ...


def op_payload(path: str, row: OpRow) -> dict[str, Any]:
    return {
        "path": path,
        "revision": row.revision,
        "op": row.op,
        "client_id": row.client_key.partition("/")[2],
        "seq": row.seq,
    }


class OpenDocument:
    def __init__(self, room: Room, doc: LiveDocument) -> None:
        self.room = room
        self.doc = doc
        self.committer = Committer(
            doc, room.hub.pool, room.hub.settings, room.publish_ops, tracer=room.hub.tracer
        )
        self.peers: dict[str, Peer] = {}
        self.saving: asyncio.Task[None] | None = None
        doc.listeners.add(self._deliver)

    def _deliver(self, doc: LiveDocument, rows: Sequence[OpRow]) -> None:
        acks = ops = 0
        for row in rows:
            if row.user_id is not None:
                doc.last_author = row.user_id
            text: str | None = None
            for peer in list(self.peers.values()):
                ack = peer.claim_ack(doc.path, row)
                if ack is not None:
                    peer.offer(ack)
                    acks += 1
                    continue
                if text is None:
                    text = envelope(
                        ServerType.OP,
                        op_payload(doc.path, row),
                        user_id=None if row.user_id is None else str(row.user_id),
                        session_id=None,
                    )
                peer.offer(text)
                ops += 1
        instruments.sent(ServerType.ACK, acks)
        instruments.sent(ServerType.OP, ops)

    def dirty(self) -> bool:
        return self.doc.revision > self.doc.checkpointed_revision

    def save_soon(self, reason: str) -> None:
        if self.saving is None or self.saving.done():
            self.saving = self.room.hub.spawn(self._save(reason))

    async def _save(self, reason: str) -> None:
        hub = self.room.hub
        try:
            await checkpoints.checkpoint(hub.pool, hub.files, self.committer, reason=reason)
        except Exception:
            log.exception("checkpoint failed", extra={"path": self.doc.path})


class Room:
    def __init__(self, hub: Hub, project_id: UUID) -> None:
        self.hub = hub
        self.project_id = project_id
        self.channel = room_channel(project_id)
        self.peers: dict[str, Peer] = {}
        self.roster = Roster()
        self.documents: dict[str, OpenDocument] = {}
        self._opening: dict[str, asyncio.Future[OpenDocument]] = {}
        self._subscriptions: list[Subscription] = []
        self._last_heartbeat = time.monotonic()
        self.refs = 0
        # Presence changes not yet sent to local peers, latest per participant (see _presence).
        self._presence: dict[str, tuple[str, Participant]] = {}
        self._presence_due: asyncio.Handle | None = None
        self._presence_sent = 0.0

    async def start(self) -> None:
        broker = self.hub.broker
        self._subscriptions = [
            await broker.subscribe(self.channel, self._on_message),
            await broker.subscribe(files_channel(str(self.project_id)), self._on_files),
            await broker.subscribe(ai_jobs_channel(str(self.project_id)), self._on_job),
        ]
        await self.publish({"kind": "hello"})

    async def stop(self) -> None:
        if self._presence_due is not None:
            self._presence_due.cancel()
            self._presence_due = None
        for subscription in self._subscriptions:
            await subscription.unsubscribe()
        self._subscriptions = []

    def _on_job(self, data: bytes) -> None:
        """An AI job of the project changed state (published by the worker): tell everyone."""
        try:
            message = json.loads(data)
            payload = {key: message[key] for key in ("job_id", "kind", "status")}
        except Exception:
            log.exception("bad job message", extra={"channel": self.channel})
            return
        self.broadcast(
            envelope(ServerType.JOB, payload, user_id=None, session_id=None), kind=ServerType.JOB
        )

    def _on_files(self, data: bytes) -> None:
        try:
            message = json.loads(data)
            for path in message.get("paths", []):
                self.file_changed(str(path))
        except Exception:
            log.exception("bad file change message", extra={"channel": self.channel})

    async def publish(self, message: dict[str, Any]) -> None:
        message["node"] = self.hub.node_id
        await self.hub.broker.publish(self.channel, orjson.dumps(message))

    def broadcast(
        self,
        text: str,
        *,
        path: str | None = None,
        skip: str | None = None,
        slot: Hashable | None = None,
        kind: ServerType | None = None,
    ) -> None:
        """Offer `text` to the room's peers (of `path`), but `skip`; counted as `kind`."""
        peers = self.peers if path is None else self._doc_peers(path)
        sent = 0
        for session_id, peer in list(peers.items()):
            if session_id != skip:
                peer.offer(text, slot)
                sent += 1
        if kind is not None:
            instruments.sent(kind, sent)

    def _doc_peers(self, path: str) -> dict[str, Peer]:
        found = self.documents.get(path)
        return {} if found is None else found.peers

    # -- documents -----------------------------------------------------------------------

    async def open_document(self, path: str) -> OpenDocument:
        found = self.documents.get(path)
        if found is not None:
            return found
        pending = self._opening.get(path)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._opening[path] = pending
            try:
                opened = await self._load(path)
            except BaseException as exc:
                pending.set_exception(exc)
                pending.exception()  # retrieved here; waiters re-raise it
                raise
            finally:
                del self._opening[path]
            self.documents[path] = opened
            pending.set_result(opened)
            return opened
        return await asyncio.shield(pending)

    async def _load(self, path: str) -> OpenDocument:
        hub = self.hub
        file = await hub.files.read(self.project_id, path)
        async with hub.pool.acquire() as conn:
            row = await store.get_document(conn, self.project_id, path)
            if row is None:
                if file is None:
                    raise CollabError("not_found", f"{path} does not exist", {"path": path})
                row = await store.create_document(
                    conn, self.project_id, path, text=file.text, file_version=file.version
                )
        doc = await load(hub.pool, row, history_limit=hub.settings.history_in_memory)
        opened = OpenDocument(self, doc)
        if file is not None and file.version != row.file_version:
            # Written while nobody had it open: merge that before anyone sees the text.
            await checkpoints.absorb(hub.pool, hub.files, opened.committer)
        return opened

    def attach(self, opened: OpenDocument, peer: Peer) -> OpenDocument:
        # The last peer may have left (and the document been dropped) while this one waited
        # for it to load: put it back rather than lose it. A stale cache catches up by itself.
        current = self.documents.setdefault(opened.doc.path, opened)
        current.peers[peer.session_id] = peer
        return current

    async def detach(self, path: str, peer: Peer, *, editor: bool) -> None:
        opened = self.documents.get(path)
        if opened is None or opened.peers.pop(peer.session_id, None) is None:
            return
        if not opened.peers:
            if opened.dirty():
                opened.save_soon("the last editor left" if editor else "closed")
                if opened.saving is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(opened.saving)
            if not opened.peers and self.documents.get(path) is opened:
                del self.documents[path]

    async def publish_ops(self, doc: LiveDocument, rows: Sequence[OpRow]) -> None:
        await self.publish(
            {
                "kind": "op",
                "path": doc.path,
                "rows": [
                    {
                        "revision": r.revision,
                        "op": r.op,
                        "client_key": r.client_key,
                        "seq": r.seq,
                        "user_id": None if r.user_id is None else str(r.user_id),
                    }
                    for r in rows
                ],
            }
        )

    # -- presence ------------------------------------------------------------------------

    def participants(self, path: str) -> list[dict[str, Any]]:
        return [p.public() for p in self.roster.in_path(path)]

    async def announce(self, peer: Peer) -> None:
        self.roster.upsert(peer.participant)
        self._presence_to_local(peer.participant, "update", skip=peer.session_id)
        await self.publish({"kind": "presence", "participant": peer.participant.wire()})

    async def gone(self, peer: Peer) -> None:
        removed = self.roster.remove(peer.session_id)
        if removed is not None:
            self._presence_to_local(removed, "gone")
        await self.publish({"kind": "gone", "session_id": peer.session_id})

    def _presence_to_local(self, who: Participant, event: str, skip: str | None = None) -> None:
        """Tell local peers (never the participant's own session) that `who` changed.

        Coalesced per room: changes are sent at once when the last presence flush is older
        than `presence_tick_s`, else when it is up, and only the latest change of each
        participant, so N people joining cost about N frames per tick rather than N².
        """
        self._presence.pop(who.session_id, None)  # the latest goes last
        self._presence[who.session_id] = (event, who)
        if self._presence_due is None:
            loop = asyncio.get_running_loop()
            wait = self._presence_sent + self.hub.settings.presence_tick_s - time.monotonic()
            if wait > 0:
                self._presence_due = loop.call_later(wait, self._send_presence)
            else:
                self._presence_due = loop.call_soon(self._send_presence)

    def _send_presence(self) -> None:
        self._presence_due = None
        self._presence_sent = time.monotonic()
        changes, self._presence = self._presence, {}
        texts = {
            session_id: envelope(
                ServerType.PRESENCE,
                {"event": event, "participant": who.public()},
                user_id=who.user_id,
                session_id=who.session_id,
            )
            for session_id, (event, who) in changes.items()
        }
        sent = 0
        for session_id, peer in list(self.peers.items()):
            for about, text in texts.items():
                if about != session_id:
                    peer.offer(text, ("presence", about))
                    sent += 1
        instruments.sent(ServerType.PRESENCE, sent)

    # -- messages from other nodes -------------------------------------------------------

    def _on_message(self, data: bytes) -> None:
        try:
            message = orjson.loads(data)
            if message.get("node") == self.hub.node_id:
                return
            self._dispatch(message)
        except Exception:
            log.exception("bad broker message", extra={"channel": self.channel})

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("kind")
        if kind == "op":
            opened = self.documents.get(message["path"])
            if opened is not None:
                for raw in message["rows"]:
                    user = raw.get("user_id")
                    row = OpRow(
                        int(raw["revision"]),
                        raw["op"],
                        str(raw["client_key"]),
                        int(raw["seq"]),
                        None if user is None else UUID(user),
                    )
                    opened.doc.receive(row, self.hub.pool)
        elif kind == "cursor":
            self.hub.spawn(self._remote_cursor(message))
        elif kind == "chat":
            self.broadcast(str(message["text"]), kind=ServerType.CHAT)
        elif kind == "presence":
            who = Participant.from_wire(message["participant"])
            if self.roster.upsert(who):
                self._presence_to_local(who, "update")
        elif kind == "roster":
            for raw in message["participants"]:
                who = Participant.from_wire(raw)
                if self.roster.upsert(who):
                    self._presence_to_local(who, "update")
        elif kind == "gone":
            removed = self.roster.remove(str(message["session_id"]))
            if removed is not None:
                self._presence_to_local(removed, "gone")
        elif kind == "hello":
            self.hub.spawn(self.heartbeat())

    def file_changed(self, path: str) -> None:
        opened = self.documents.get(path)
        if opened is not None:
            hub = self.hub
            hub.spawn(checkpoints.absorb(hub.pool, hub.files, opened.committer))

    # -- cursors -------------------------------------------------------------------------

    async def cursor(
        self, peer: Peer, path: str, revision: int, position: int, end: int | None
    ) -> None:
        opened = self.documents[path]
        doc = opened.doc
        if revision > doc.revision:
            await doc.catch_up(self.hub.pool)  # the client heard of it through another node
            if revision > doc.revision:
                raise CollabError(
                    "invalid_revision",
                    f"revision {revision} is ahead of the document ({doc.revision})",
                    {"path": path, "revision": doc.revision},
                )
        position = doc.transform_position(revision, position)
        end = None if end is None else doc.transform_position(revision, end)
        payload = {
            "path": path,
            "revision": doc.revision,
            "position": position,
            "selection_end": end,
        }
        who = peer.participant
        text = envelope(
            ServerType.CURSOR,
            {**payload, "color": who.colour, "name": who.name},
            user_id=who.user_id,
            session_id=who.session_id,
        )
        self.broadcast(
            text,
            path=path,
            skip=peer.session_id,
            slot=("cursor", who.session_id, path),
            kind=ServerType.CURSOR,
        )
        await self.publish({"kind": "cursor", **payload, "participant": who.wire()})

    async def _remote_cursor(self, message: dict[str, Any]) -> None:
        path = str(message["path"])
        opened = self.documents.get(path)
        if opened is None:
            return
        doc = opened.doc
        revision = int(message["revision"])
        if revision > doc.revision:
            await doc.catch_up(self.hub.pool)
        try:
            position = doc.transform_position(revision, int(message["position"]))
            end = message.get("selection_end")
            end = None if end is None else doc.transform_position(revision, int(end))
        except (CollabError, ValueError):
            return
        who = Participant.from_wire(message["participant"])
        text = envelope(
            ServerType.CURSOR,
            {
                "path": path,
                "revision": doc.revision,
                "position": position,
                "selection_end": end,
                "color": who.colour,
                "name": who.name,
            },
            user_id=who.user_id,
            session_id=who.session_id,
        )
        self.broadcast(
            text, path=path, slot=("cursor", who.session_id, path), kind=ServerType.CURSOR
        )

    # -- timers --------------------------------------------------------------------------

    async def heartbeat(self) -> None:
        self._last_heartbeat = time.monotonic()
        local = [p.participant.wire() for p in self.peers.values()]
        if local:
            for peer in self.peers.values():
                self.roster.upsert(peer.participant)
            await self.publish({"kind": "roster", "participants": local})

    def tick(self, now: float) -> None:
        settings = self.hub.settings
        if now - self._last_heartbeat >= settings.presence_heartbeat_s:
            self.hub.spawn(self.heartbeat())
        for who in self.roster.expire(self.hub.node_id, settings.presence_timeout_s):
            self._presence_to_local(who, "gone")
        for peer in list(self.peers.values()):
            if now - peer.last_heard > settings.client_timeout_s:
                peer.kick(
                    CLIENT_TIMEOUT_CLOSE_CODE, f"nothing heard for {settings.client_timeout_s:g} s"
                )
        for opened in list(self.documents.values()):
            doc = opened.doc
            if not opened.dirty():
                continue
            if doc.revision - doc.checkpointed_revision >= settings.checkpoint_every_ops:
                opened.save_soon(f"{settings.checkpoint_every_ops} edits")
            elif now - doc.last_change >= settings.checkpoint_idle_s:
                opened.save_soon("idle")


class Hub:
    def __init__(
        self,
        pool: asyncpg.Pool,
        broker: Broker,
        files: DocumentFiles,
        settings: CollabSettings | None = None,
        *,
        node_id: str | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.pool = pool
        # Spans of the submit path (collab/session.py, collab/submit.py); none by default.
        self.tracer = tracer or trace.NoOpTracer()
        self.broker = broker
        self.files = files
        self.settings = settings or CollabSettings()
        self.node_id = node_id or uuid.uuid4().hex[:12]
        # Every connection's outgoing frames, flushed together (collab/fanout.py).
        self.fanout = Fanout(self.settings.fanout_tick_s)
        self.rooms: dict[UUID, Room] = {}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._queued = 0  # what this hub last added to the fan-out depth gauge

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("collab task failed", exc_info=task.exception())

    async def enter(self, project_id: UUID) -> Room:
        async with self._lock:
            if self._ticker is None:
                self._ticker = asyncio.get_running_loop().create_task(self._tick())
            room = self.rooms.get(project_id)
            if room is None:
                room = Room(self, project_id)
                await room.start()
                self.rooms[project_id] = room
            room.refs += 1
            return room

    async def exit(self, room: Room) -> None:
        async with self._lock:
            room.refs -= 1
            if room.refs == 0 and not room.documents:
                await room.stop()
                self.rooms.pop(room.project_id, None)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            for room in list(self.rooms.values()):
                try:
                    room.tick(now)
                except Exception:
                    log.exception("collab tick failed")
            self._report_queued(self.fanout.depth())

    def _report_queued(self, queued: int) -> None:
        # By difference: several hubs (tests) or processes add up in one gauge.
        metrics.FANOUT_DEPTH.inc(queued - self._queued)
        self._queued = queued

    async def files_changed(self, event: ChangeEvent) -> None:
        """File system notifier on this node: the fast path for writes made here (other
        nodes hear of them from the versioning workflow on the files channel)."""
        room = self.rooms.get(event.project_id)
        if room is not None:
            for path in event.paths:
                room.file_changed(path)

    async def close(self) -> None:
        """Checkpoint what is unsaved, then stop (serving is ending)."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for room in list(self.rooms.values()):
            for opened in list(room.documents.values()):
                if opened.dirty():
                    opened.save_soon("server shutting down")
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=10)
        for room in list(self.rooms.values()):
            await room.stop()
        self.rooms.clear()
        self.fanout.cancel()
        self._report_queued(0)
        await self.broker.close()
