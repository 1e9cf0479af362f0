"""A project room on one API node: its local peers, the roster, the documents open here.

A ``Room`` is one project as this node sees it: the local sessions (``peers``), the roster of
every participant on any node, and the documents open here, each with the peers that joined
it. It hears the same room on other nodes through its ``Relay`` (collab/relay.py) and shows
cursors and presence changes through collab/cursors.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from collab import checkpoint as checkpoints
from collab import cursors, instruments
from collab.document import LiveDocument, load
from collab.errors import CollabError
from collab.presence import Participant, Roster
from collab.protocol import ServerType, envelope
from collab.relay import Relay
from collab.submit import Committer
from store import collab as store
from store.collab import OpRow

if TYPE_CHECKING:
    from collab.hub import Hub

log = logging.getLogger("vaporform.collab")


class Peer(Protocol):
    """What a room needs from a connection (collab/session.py)."""

    session_id: str
    participant: Participant
    batching: bool  # array frames: a message may be several envelopes joined by commas

    def offer(self, text: str, slot: Hashable | None = None) -> None: ...

    def claim_ack(self, path: str, row: OpRow) -> str | None:
        """The ack to send when `row` is this peer's own op it is waiting for, else None."""
        ...

    def resync(self, path: str, why: str) -> None:
        """The document jumped past what this peer's client has: it must re-join `path`."""
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
            doc,
            room.hub.pool,
            room.hub.settings,
            room.relay.publish_ops,
            tracer=room.hub.tracer,
            group=room.hub.group_commit,
        )
        self.peers: dict[str, Peer] = {}
        self.saving: asyncio.Task[None] | None = None
        self.saved_at = -math.inf  # monotonic time of the last save begun
        doc.listeners.add(self._deliver)
        doc.jump_listeners.add(self._jumped)

    def _jumped(self, doc: LiveDocument) -> None:
        why = f"the document moved to revision {doc.revision} past what this connection had"
        for peer in list(self.peers.values()):
            peer.resync(doc.path, why)

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
            self.saved_at = time.monotonic()
            self.saving = self.room.hub.spawn(self._save(reason))

    async def _save(self, reason: str) -> None:
        hub = self.room.hub
        try:
            # Documents that started together reach `checkpoint_every_ops` together: 50 files
            # versioned at once held their ops back up to 480 ms (bench/collab_results.md).
            hub.checkpoints_queued += 1
            try:
                await hub.checkpoint_slots.acquire()
            finally:
                hub.checkpoints_queued -= 1
            try:
                await checkpoints.checkpoint(hub.pool, hub.files, self.committer, reason=reason)
            finally:
                hub.checkpoint_slots.release()
        except Exception:
            log.exception("checkpoint failed", extra={"path": self.doc.path})


class Room:
    def __init__(self, hub: Hub, project_id: UUID) -> None:
        self.hub = hub
        self.project_id = project_id
        self.peers: dict[str, Peer] = {}
        self.roster = Roster()
        self.documents: dict[str, OpenDocument] = {}
        self._opening: dict[str, asyncio.Future[OpenDocument]] = {}
        self.refs = 0
        self.relay = Relay(self)
        self.presence = cursors.PresenceBatch(self)
        self._silent: set[str] = set()  # nodes that left a forwarded op unanswered
        # Owners by path, worked out again when the roster or `_silent` changes: reading
        # the roster for every op cost O(participants) per op.
        self._owners: dict[str, str] = {}
        self._owners_of = -1  # the roster version `_owners` was worked out for

    async def start(self) -> None:
        await self.relay.start()

    async def stop(self) -> None:
        self.presence.cancel()
        await self.relay.stop()

    async def publish(self, message: dict[str, Any]) -> None:
        """To the same room on the other nodes."""
        await self.relay.publish(message)

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

    # -- who commits a document (collab/forward.py) ----------------------------------------

    def owner(self, path: str) -> str:
        """The node that commits `path`: the smallest id among the nodes with someone who
        has it open (this one included), less those that went silent."""
        if self._owners_of != self.roster.version:
            self._owners.clear()
            self._owners_of = self.roster.version
        found = self._owners.get(path)
        if found is None:
            nodes = {p.node for p in self.roster.in_path(path)} - self._silent
            nodes.add(self.hub.node_id)
            found = self._owners[path] = min(nodes)
        return found

    def unreachable(self, node: str) -> None:
        if node not in self._silent:
            self._silent.add(node)
            self._owners.clear()

    def heard_from(self, node: str) -> None:
        if node in self._silent:
            self._silent.discard(node)
            self._owners.clear()

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

    def file_changed(self, path: str) -> None:
        """The file behind `path` was written (here or on another node): absorb it as an op."""
        opened = self.documents.get(path)
        if opened is not None:
            hub = self.hub
            hub.spawn(checkpoints.absorb(hub.pool, hub.files, opened.committer))

    # -- presence and cursors ------------------------------------------------------------

    def participants(self, path: str) -> list[dict[str, Any]]:
        return [p.public() for p in self.roster.in_path(path)]

    async def announce(self, peer: Peer) -> None:
        self.roster.upsert(peer.participant)
        self.presence.add(peer.participant, "update")
        await self.publish({"kind": "presence", "participant": peer.participant.wire()})

    async def gone(self, peer: Peer) -> None:
        removed = self.roster.remove(peer.session_id)
        if removed is not None:
            self.presence.add(removed, "gone")
        await self.publish({"kind": "gone", "session_id": peer.session_id})

    async def cursor(
        self, peer: Peer, path: str, revision: int, position: int, end: int | None
    ) -> None:
        await cursors.send_local(self, peer, path, revision, position, end)

    # -- timers --------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        settings = self.hub.settings
        if now - self.relay.last_heartbeat >= settings.presence_heartbeat_s:
            self.hub.spawn(self.relay.heartbeat())
        for who in self.roster.expire(self.hub.node_id, settings.presence_timeout_s):
            self.presence.add(who, "gone")
        # No local peer is dropped for silence: one that only reads sends nothing. A dead one
        # is noticed by its socket (collab/settings.py `dead_peer_s`) and leaves as any other.
        for opened in list(self.documents.values()):
            doc = opened.doc
            if not opened.dirty():
                continue
            if (
                doc.revision - doc.checkpointed_revision >= settings.checkpoint_every_ops
                and now - opened.saved_at >= settings.checkpoint_busy_s
            ):
                opened.save_soon(f"{settings.checkpoint_every_ops} edits")
            elif now - doc.last_change >= settings.checkpoint_idle_s:
                opened.save_soon("idle")
