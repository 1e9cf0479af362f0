"""Who is connected to a project, on any node, and which files they have open.

Each node announces its own sessions over the broker when they change and every
``presence_heartbeat_s``; entries of other nodes not heard from within ``presence_timeout_s``
are dropped (their node died or lost Redis), so a participant never lingers for ever.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

# Distinguishable on light and dark backgrounds; a user keeps the same one everywhere.
PALETTE = (
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#9a6324",
    "#469990",
    "#800000",
    "#808000",
    "#000075",
)


def colour_for(user_id: str) -> str:
    digest = hashlib.sha256(user_id.encode()).digest()
    return PALETTE[int.from_bytes(digest[:4], "big") % len(PALETTE)]


@dataclass(slots=True)
class Participant:
    session_id: str
    user_id: str
    name: str
    colour: str
    node: str
    paths: list[str] = field(default_factory=list)
    seen: float = field(default_factory=time.monotonic)

    def public(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "user_id": self.user_id,
            "name": self.name,
            "color": self.colour,
            "paths": list(self.paths),
        }

    def wire(self) -> dict[str, Any]:
        return {**self.public(), "node": self.node}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Participant:
        return cls(
            session_id=str(data["session_id"]),
            user_id=str(data["user_id"]),
            name=str(data["name"]),
            colour=str(data["color"]),
            node=str(data["node"]),
            paths=[str(p) for p in data.get("paths", [])],
        )


class Roster:
    """The participants of one project as this node knows them."""

    def __init__(self) -> None:
        self.by_session: dict[str, Participant] = {}
        self.version = 0  # moves on whenever someone comes, goes or opens other files

    def _changed(self) -> None:
        self.version += 1

    def upsert(self, participant: Participant) -> bool:
        """Record; True when something visible changed."""
        old = self.by_session.get(participant.session_id)
        participant.seen = time.monotonic()
        self.by_session[participant.session_id] = participant
        changed = old is None or old.paths != participant.paths or old.name != participant.name
        if changed:
            self._changed()
        return changed

    def remove(self, session_id: str) -> Participant | None:
        removed = self.by_session.pop(session_id, None)
        if removed is not None:
            self._changed()
        return removed

    def in_path(self, path: str) -> list[Participant]:
        return [p for p in self.by_session.values() if path in p.paths]

    def expire(self, local_node: str, timeout_s: float) -> list[Participant]:
        """Drop other nodes' participants not heard from within `timeout_s`."""
        cutoff = time.monotonic() - timeout_s
        gone = [p for p in self.by_session.values() if p.node != local_node and p.seen < cutoff]
        for participant in gone:
            del self.by_session[participant.session_id]
        if gone:
            self._changed()
        return gone
