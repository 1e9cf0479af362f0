"""The collaboration WebSocket: a thin pump between the socket and a `collab.session.Session`.

Authentication, membership and the role are settled before the WebSocket is accepted, so a
refused client sees a real HTTP status with our JSON error. The process-wide `Hub` is created
on first use and checkpoints unsaved documents when serving stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from quart import Blueprint, current_app, websocket

from collab.broker import open_broker
from collab.files import FileSystemFiles
from collab.hub import Hub
from collab.session import OVERFLOW_CLOSE_CODE, Session
from store import users
from store.filesystem import ChangeEvent
from web.access import project_for
from web.auth import principal
from web.errors import APIError, error_response, not_found
from web.services import services

blueprint = Blueprint("collab", __name__, url_prefix="/api/v1/projects")

HUB_KEY = "vaporform.collab"


def collab_hub() -> Hub:
    found: Hub | None = current_app.extensions.get(HUB_KEY)
    if found is None:
        found = _build_hub()
        current_app.extensions[HUB_KEY] = found
    return found


def _build_hub() -> Hub:
    found = services()
    config = found.config
    hub = Hub(
        found.pool,
        open_broker(config.redis_url, config.redis_prefix),
        FileSystemFiles(found.files),
        config.collab,
    )
    # A write through the file system (REST, restore, archive import) becomes an op in the
    # live document of that path, on whichever node has it open.
    previous = found.files.notifier

    async def notify(event: ChangeEvent) -> None:
        if previous is not None:
            await previous(event)
        await hub.files_changed(event)

    found.files.notifier = notify
    return hub


@blueprint.after_app_serving
async def _close_hub() -> None:
    found: Hub | None = current_app.extensions.pop(HUB_KEY, None)
    if found is not None:
        await found.close()


@blueprint.websocket("/<project_id>/collab")
async def collab(project_id: str) -> Any:
    try:
        caller = await principal()
        async with services().pool.acquire() as conn:
            project = await project_for(conn, project_id, caller.user_id)
            user = await users.by_id(conn, caller.user_id)
        if user is None:
            raise not_found("user")
    except APIError as exc:
        response = error_response(exc.status, exc.code, exc.message, exc.details)
        response.headers.update(exc.headers)
        return response
    await websocket.accept()
    hub = collab_hub()
    room = await hub.enter(project.id)
    session = Session(
        room, user_id=user.id, name=user.name, role=project.role, settings=hub.settings
    )
    await session.start()
    writer = asyncio.ensure_future(_pump_out(session))
    reader = asyncio.ensure_future(_pump_in(session))
    try:
        await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (writer, reader):
            task.cancel()
        await asyncio.gather(writer, reader, return_exceptions=True)
        with contextlib.suppress(Exception):
            await session.close()
        await hub.exit(room)


async def _pump_in(session: Session) -> None:
    while True:
        await session.handle(await websocket.receive())


async def _pump_out(session: Session) -> None:
    while True:
        text = await session.outbox.get()
        if text is None:
            await websocket.close(OVERFLOW_CLOSE_CODE, "too slow: re-join to resync")
            return
        await websocket.send(text)
