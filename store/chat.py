"""Queries on `collab_chat`: a project's chat messages, newest first in pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from store.db import Conn


@dataclass(frozen=True, slots=True)
class ChatMessage:
    message_id: UUID
    project_id: UUID
    user_id: UUID | None
    name: str
    text: str
    created_at: datetime

    def public(self) -> dict[str, Any]:
        return {
            "message_id": str(self.message_id),
            "user_id": None if self.user_id is None else str(self.user_id),
            "name": self.name,
            "text": self.text,
            "created_at": self.created_at.isoformat(),
        }


async def add_chat(
    conn: Conn, project_id: UUID, user_id: UUID, name: str, text: str
) -> ChatMessage:
    row = await conn.fetchrow(
        """
        INSERT INTO collab_chat (project_id, user_id, name, text) VALUES ($1, $2, $3, $4)
        RETURNING message_id, project_id, user_id, name, text, created_at
        """,
        project_id,
        user_id,
        name,
        text,
    )
    assert row is not None
    return ChatMessage(**dict(row))


async def chat_page(
    conn: Conn, project_id: UUID, *, before: UUID | None, limit: int
) -> list[ChatMessage] | None:
    """Newest first; None when `before` names no message of the project."""
    cutoff: int | None = None
    if before is not None:
        cutoff = await conn.fetchval(
            "SELECT id FROM collab_chat WHERE project_id = $1 AND message_id = $2",
            project_id,
            before,
        )
        if cutoff is None:
            return None
    rows = await conn.fetch(
        """
        SELECT message_id, project_id, user_id, name, text, created_at FROM collab_chat
        WHERE project_id = $1 AND ($2::bigint IS NULL OR id < $2)
        ORDER BY id DESC LIMIT $3
        """,
        project_id,
        cutoff,
        limit,
    )
    return [ChatMessage(**dict(r)) for r in rows]
