"""Chat history of a project (the messages themselves travel over the collaboration socket)."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel
from quart import Blueprint, request
from quart_schema import document_querystring, document_response

from store import chat as store
from web.access import project_for
from web.auth import principal, require_auth
from web.errors import APIError, not_found
from web.openapi import document_errors
from web.services import services

blueprint = Blueprint("chat", __name__, url_prefix="/api/v1/projects")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class ChatQuery(BaseModel):
    before: str | None = None
    limit: int | None = None


class ChatMessageOut(BaseModel):
    message_id: str
    user_id: str | None
    name: str
    text: str
    created_at: str


class ChatPage(BaseModel):
    items: list[ChatMessageOut]


@blueprint.get("/<project_id>/chat")
@require_auth
@document_querystring(ChatQuery)
@document_response(ChatPage)
@document_errors((400, "`invalid_query` (`details.field`)"))
async def chat_history(project_id: str) -> dict[str, Any]:
    """Newest first; `before` is a message_id (exclusive), `limit` 1-200 (default 50)."""
    caller = await principal()
    raw_before = request.args.get("before")
    raw_limit = request.args.get("limit")
    try:
        before = uuid.UUID(raw_before) if raw_before else None
    except ValueError:
        raise APIError(
            400, "invalid_query", "before must be a message_id", {"field": "before"}
        ) from None
    try:
        limit = DEFAULT_LIMIT if raw_limit in (None, "") else int(raw_limit)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise APIError(400, "invalid_query", f"limit must be 1-{MAX_LIMIT}", {"field": "limit"})
    async with services().pool.acquire() as conn:
        project = await project_for(conn, project_id, caller.user_id)
        page = await store.chat_page(conn, project.id, before=before, limit=limit)
    if page is None:
        raise not_found("message")
    return {"items": [m.public() for m in page]}
