"""What crosses nodes: a room's messages to and from the same room on other API nodes.

A room talks to the others through the broker channel ``project:<id>``
(``collab.channels.room_channel``); every message carries the sending node's id so a node
ignores its own. Messages on that channel (JSON):

``op`` ``{path, rows: [{revision, op, client_key, seq, user_id}]}`` committed ops;
``cursor``, ``chat``, ``presence`` ``{participant}``, ``gone`` ``{session_id}``,
``roster`` ``{participants}`` (heartbeat), ``hello`` (a node opened the room: answer with a
roster). A room also listens on the file system's channel ``project:<id>:files``
(``collab.channels.files_channel``), where the versioning workflow announces every file change,
whoever made it: a live document of a changed path absorbs the change as an op; and on
``project:<id>:jobs`` (``collab.channels.ai_jobs_channel``), whose AI job states it passes on.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson

from collab import cursors
from collab.broker import Subscription
from collab.channels import ai_jobs_channel, files_channel, room_channel
from collab.document import LiveDocument
from collab.presence import Participant
from collab.protocol import ServerType, envelope
from store.collab import OpRow

if TYPE_CHECKING:
    from collab.room import Room

log = logging.getLogger("vaporform.collab")


class Relay:
    """The broker side of one room: its subscriptions, what it publishes, what it hears."""

    def __init__(self, room: Room) -> None:
        self.room = room
        self.channel = room_channel(room.project_id)
        self._subscriptions: list[Subscription] = []
        self.last_heartbeat = time.monotonic()

    async def start(self) -> None:
        broker = self.room.hub.broker
        project = str(self.room.project_id)
        self._subscriptions = [
            await broker.subscribe(self.channel, self._on_message),
            await broker.subscribe(files_channel(project), self._on_files),
            await broker.subscribe(ai_jobs_channel(project), self._on_job),
        ]
        await self.publish({"kind": "hello"})

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            await subscription.unsubscribe()
        self._subscriptions = []

    # -- out -----------------------------------------------------------------------------

    async def publish(self, message: dict[str, Any]) -> None:
        hub = self.room.hub
        message["node"] = hub.node_id
        await hub.broker.publish(self.channel, orjson.dumps(message))

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

    async def heartbeat(self) -> None:
        """Announce this node's participants of the room (and refresh them in the roster)."""
        room = self.room
        self.last_heartbeat = time.monotonic()
        local = [p.participant.wire() for p in room.peers.values()]
        if local:
            for peer in room.peers.values():
                room.roster.upsert(peer.participant)
            await self.publish({"kind": "roster", "participants": local})

    # -- in ------------------------------------------------------------------------------

    def _on_job(self, data: bytes) -> None:
        """An AI job of the project changed state (published by the worker): tell everyone."""
        try:
            message = json.loads(data)
            payload = {key: message[key] for key in ("job_id", "kind", "status")}
        except Exception:
            log.exception("bad job message", extra={"channel": self.channel})
            return
        self.room.broadcast(
            envelope(ServerType.JOB, payload, user_id=None, session_id=None), kind=ServerType.JOB
        )

    def _on_files(self, data: bytes) -> None:
        try:
            message = json.loads(data)
            for path in message.get("paths", []):
                self.room.file_changed(str(path))
        except Exception:
            log.exception("bad file change message", extra={"channel": self.channel})

    def _on_message(self, data: bytes) -> None:
        try:
            message = orjson.loads(data)
            node = message.get("node")
            if node == self.room.hub.node_id:
                return
            self.room.heard_from(str(node))
            self._dispatch(message)
        except Exception:
            log.exception("bad broker message", extra={"channel": self.channel})

    def _dispatch(self, message: dict[str, Any]) -> None:
        room = self.room
        kind = message.get("kind")
        if kind == "op":
            self._receive_ops(message["path"], message["rows"])
        elif kind == "cursor":
            room.hub.spawn(cursors.show_remote(room, message))
        elif kind == "chat":
            room.broadcast(str(message["text"]), kind=ServerType.CHAT)
        elif kind == "presence":
            self._heard(Participant.from_wire(message["participant"]))
        elif kind == "roster":
            for raw in message["participants"]:
                self._heard(Participant.from_wire(raw))
        elif kind == "gone":
            removed = room.roster.remove(str(message["session_id"]))
            if removed is not None:
                room.presence.add(removed, "gone")
        elif kind == "hello":
            room.hub.spawn(self.heartbeat())

    def _heard(self, who: Participant) -> None:
        if self.room.roster.upsert(who):
            self.room.presence.add(who, "update")

    def _receive_ops(self, path: str, rows: list[dict[str, Any]]) -> None:
        opened = self.room.documents.get(path)
        if opened is None:
            return
        for raw in rows:
            user = raw.get("user_id")
            row = OpRow(
                int(raw["revision"]),
                raw["op"],
                str(raw["client_key"]),
                int(raw["seq"]),
                None if user is None else UUID(user),
            )
            opened.doc.receive(row, self.room.hub.pool)
