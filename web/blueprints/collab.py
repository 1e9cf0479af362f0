"""The collaboration WebSocket: a thin pump between the socket and a `collab.session.Session`.

Authentication, membership and the role are settled before the WebSocket is accepted, so a
refused client sees a real HTTP status with our JSON error. The process-wide `Hub` is one of
the services (web/app.py builds it when serving starts and closes it when serving stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from quart import Blueprint, websocket

from collab.session import Session
from store import users
from web import socket_reads
from web.access import project_for
from web.auth import principal
from web.errors import APIError, error_response, not_found
from web.openapi import document_websocket
from web.revocation import ACCESS_REVOKED_CLOSE_CODE, revocations
from web.services import services
from web.telemetry import frame_sender

blueprint = Blueprint("collab", __name__, url_prefix="/api/v1/projects")
log = logging.getLogger(__name__)

STUCK_WRITER_S = 2.0


@blueprint.websocket("/<project_id>/collab")
@document_websocket(
    "live editing of the project's files, cursors, presence and chat",
    "docs/protocol.md",
)
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
    hub = services().collab
    room = await hub.enter(project.id)
    session = Session(
        room,
        user_id=user.id,
        name=user.name,
        role=project.role,
        settings=hub.settings,
        # Array frames unless the client asks for one envelope per frame (docs/protocol.md).
        batching=websocket.args.get("batch") != "0",
    )
    kicked = asyncio.Event()
    session.on_kick = kicked.set
    try:
        await session.start()
    except BaseException:
        # start() registers the session in the room before announcing it (over Redis): if
        # that fails, undo it, or the room keeps a participant nobody will ever remove.
        await _leave(session, ())
        raise
    assert caller.claims is not None
    # Removal, another role, logout of this token, project deletion, a disabled account:
    # closed (4003) or downgraded within the re-check bound, whichever node made the change.
    watch = revocations().watch(
        user_id=user.id,
        project_id=project.id,
        jti=caller.claims.jti,
        role=project.role,
        on_revoke=lambda reason: session.kick(ACCESS_REVOKED_CLOSE_CODE, reason),
        on_role=session.change_role,
    )
    writer = asyncio.ensure_future(_pump_out(session))
    reader = asyncio.ensure_future(_pump_in(session))
    stuck = asyncio.ensure_future(kicked.wait())
    try:
        await asyncio.wait({writer, reader, stuck}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.close()
        for task in (writer, reader, stuck):
            task.cancel()
        # Leave the room before saying goodbye: the close handshake of a stuck socket may
        # never finish (and the server may cancel this handler meanwhile).
        await _leave(session, (writer, reader, stuck))
        if session.close_code is not None:
            with contextlib.suppress(Exception):
                goodbye = asyncio.ensure_future(
                    websocket.close(session.close_code, session.close_reason)
                )
                await asyncio.wait({goodbye}, timeout=STUCK_WRITER_S)


async def _leave(session: Session, pumps: tuple[asyncio.Future[Any], ...]) -> None:
    """Take `session` out of its room, to the end even if this handler is cancelled: Quart
    cancels it when its reader meets the client's disconnect, which may be while it is
    already here (a pump ended first: a send to the closed socket failed). Cut short, the
    session stayed in the room for good, a participant nobody would remove, its queue
    growing (58-427 of 1,000 clients leaving at once, in four runs)."""
    await asyncio.shield(session.room.hub.spawn(_leaving(session, pumps)))


async def _leaving(session: Session, pumps: tuple[asyncio.Future[Any], ...]) -> None:
    if pumps:
        # A writer blocked on a full socket may not give in to the cancel at once (Granian
        # finishes the send first): leave without it rather than wait for ever.
        await asyncio.wait(pumps, timeout=STUCK_WRITER_S)
    try:
        await session.close()
    except Exception:
        log.exception("leaving the room failed", extra={"session_id": session.session_id})
    await session.room.hub.exit(session.room)


async def _pump_in(session: Session) -> None:
    receive = socket_reads.reader()
    while True:
        await session.handle(await receive())


async def _pump_out(session: Session) -> None:
    send = frame_sender()
    while True:
        frames = await session.outbox.frames()
        if frames is None:
            return
        await send(frames)
