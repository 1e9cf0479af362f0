"""Where the others are in a room: cursors and presence changes, as local peers receive them.

Both are coalesced so that a crowd stays cheap. A cursor goes out in the outbox slot of its
participant and file (collab/fanout.py), so only the latest position of each waits to be sent.
Presence changes are held per room and sent at most once per ``presence_tick_s``, only the
latest change of each participant, as blocks of envelopes joined once (collab/fanout.py
joins them into array frames): N people joining cost each peer a few messages per tick, not N.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import TYPE_CHECKING, Any

from collab import instruments
from collab.errors import CollabError
from collab.presence import Participant
from collab.protocol import ServerType, envelope

if TYPE_CHECKING:
    from collab.room import Peer, Room

# A block of presence changes is one queued message (fanout.FRAME_CHARS caps a frame at 64 KiB).
BLOCK_CHARS = 16 * 1024
_serial = itertools.count()


def _slot(who: Participant, path: str) -> tuple[str, str, str]:
    return ("cursor", who.session_id, path)


def _envelope(payload: dict[str, Any], who: Participant) -> str:
    return envelope(
        ServerType.CURSOR,
        {**payload, "color": who.colour, "name": who.name},
        user_id=who.user_id,
        session_id=who.session_id,
    )


async def send_local(
    room: Room, peer: Peer, path: str, revision: int, position: int, end: int | None
) -> None:
    """A local peer moved its cursor: show it to the file's other peers, here and elsewhere."""
    opened = room.documents[path]
    doc = opened.doc
    if revision > doc.revision:
        await doc.catch_up(room.hub.pool)  # the client heard of it through another node
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
    room.broadcast(
        _envelope(payload, who),
        path=path,
        skip=peer.session_id,
        slot=_slot(who, path),
        kind=ServerType.CURSOR,
    )
    await room.publish({"kind": "cursor", **payload, "participant": who.wire()})


async def show_remote(room: Room, message: dict[str, Any]) -> None:
    """A participant of another node moved its cursor (a broker `cursor` message)."""
    path = str(message["path"])
    opened = room.documents.get(path)
    if opened is None:
        return
    doc = opened.doc
    revision = int(message["revision"])
    if revision > doc.revision:
        await doc.catch_up(room.hub.pool)
    try:
        position = doc.transform_position(revision, int(message["position"]))
        end = message.get("selection_end")
        end = None if end is None else doc.transform_position(revision, int(end))
    except (CollabError, ValueError):
        return
    who = Participant.from_wire(message["participant"])
    payload = {
        "path": path,
        "revision": doc.revision,
        "position": position,
        "selection_end": end,
    }
    room.broadcast(
        _envelope(payload, who), path=path, slot=_slot(who, path), kind=ServerType.CURSOR
    )


class PresenceBatch:
    """Presence changes of one room not yet sent to its local peers."""

    def __init__(self, room: Room) -> None:
        self.room = room
        # Latest change per participant, in the order of their latest change.
        self._changes: dict[str, tuple[str, Participant]] = {}
        self._due: asyncio.Handle | None = None
        self._sent = 0.0

    def add(self, who: Participant, event: str) -> None:
        """Tell local peers (never the participant's own session) that `who` changed.

        Sent at once when the last flush is older than `presence_tick_s`, else when it is up.
        """
        self._changes.pop(who.session_id, None)  # the latest goes last
        self._changes[who.session_id] = (event, who)
        if self._due is None:
            loop = asyncio.get_running_loop()
            wait = self._sent + self.room.hub.settings.presence_tick_s - time.monotonic()
            if wait > 0:
                self._due = loop.call_later(wait, self._send)
            else:
                self._due = loop.call_soon(self._send)

    def cancel(self) -> None:
        if self._due is not None:
            self._due.cancel()
            self._due = None

    def _send(self) -> None:
        self._due = None
        self._sent = time.monotonic()
        changes, self._changes = self._changes, {}
        texts = {
            session_id: envelope(
                ServerType.PRESENCE,
                {"event": event, "participant": who.public()},
                user_id=who.user_id,
                session_id=who.session_id,
            )
            for session_id, (event, who) in changes.items()
        }
        blocks = _blocks(texts)
        sent = 0
        for session_id, peer in list(self.room.peers.items()):
            if peer.batching:
                # An array-frame client takes a block of changes as one queued message:
                # 1,000 people leaving at once are ~13 offers to each who stays, not 1,000.
                for block in blocks:
                    text = block.without(session_id)
                    if text:
                        peer.offer(text, block.slot)
            else:
                for about, text in texts.items():
                    if about != session_id:
                        peer.offer(text, ("presence", about))
            sent += len(texts) - (session_id in texts)
        instruments.sent(ServerType.PRESENCE, sent)


class _Block:
    """Presence envelopes of one tick joined once, as the inside of an array frame."""

    __slots__ = ("joined", "slot", "texts")

    def __init__(self, texts: dict[str, str]) -> None:
        # Its own slot: not counted against the send queue (a crowd must not overflow the
        # people already there), and never superseded (it is not one participant's latest).
        self.slot = ("presence", next(_serial))
        self.texts = texts
        self.joined = ",".join(texts.values())

    def without(self, session_id: str) -> str:
        """What `session_id` gets: never its own change."""
        if session_id not in self.texts:
            return self.joined
        return ",".join(text for about, text in self.texts.items() if about != session_id)


def _blocks(texts: dict[str, str]) -> list[_Block]:
    """Blocks of at most about BLOCK_CHARS, so that frames stay near their size limit."""
    blocks: list[_Block] = []
    current: dict[str, str] = {}
    size = 0
    for session_id, text in texts.items():
        if current and size + len(text) > BLOCK_CHARS:
            blocks.append(_Block(current))
            current, size = {}, 0
        current[session_id] = text
        size += len(text) + 1
    if current:
        blocks.append(_Block(current))
    return blocks
