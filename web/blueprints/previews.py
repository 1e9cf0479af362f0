"""`POST /api/v1/projects/{pid}/previews`: a way into a dev server running in the container.

The answer names the preview's own origin (`VAPORFORM_PREVIEW_URL`, one origin per preview,
never the API's) and an entry URL carrying a one-time ticket (`/p/enter?ticket=`, ~30 s); the
preview origin (web/preview_origin.py) turns the ticket into an httpOnly cookie for that
preview only. Any member may open one: viewers may view. The port must be one the container
publishes (`ports` asked at start, `network: "bridge"`); a preview closes when its container
stops (a new container makes new preview ids).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import jwt
from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint
from quart_schema import document_response, validate_request

from agent.grants import preview_key
from vaporform.config import Config
from web import audit
from web.access import caller_project
from web.auth import require_auth
from web.containers_edge import current_status
from web.errors import APIError
from web.openapi import document_errors
from web.services import services
from web.tokens import new_opaque_token
from workflows.containers.names import Status

blueprint = Blueprint("previews", __name__, url_prefix="/api/v1/projects")

# A ticket is signed, not stored: the preview origin may be another process with no store in
# common (one machine without Redis). It counts `preview-ticket:<jti>` to use each one once.
TICKET_PREFIX = "preview-ticket:"
TICKET_AUDIENCE = "preview-ticket"
ENTER_PATH = "/p/enter"


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    port: int = Field(ge=1, le=65535, description="a port the container publishes")
    path: str = Field(
        default="/", max_length=2048, pattern=r"^/[^\s]*$", description="where entry lands"
    )


class PreviewOut(BaseModel):
    preview_id: str
    port: int
    origin: str
    url: str
    expires_in: int


def preview_id_for(config: Config, project_id: str, container_id: str, port: int) -> str:
    """Stable for one container and port, unguessable, a DNS label (32 hex digits)."""
    message = f"{project_id}:{container_id}:{port}".encode()
    return hmac.new(preview_key(config), message, hashlib.sha256).hexdigest()[:32]


def preview_origin(config: Config, preview_id: str) -> str:
    return config.previews.url.replace("{id}", preview_id)


@blueprint.post("/<project_id>/previews")
@require_auth
@validate_request(PreviewIn)
@document_response(PreviewOut, 201)
@document_errors(
    (409, "`container_not_running`; `port_not_published` (`details: {port, ports}`)"),
    (503, "`workflow_unavailable`: retry later"),
)
async def open_preview(project_id: str, data: PreviewIn) -> tuple[dict[str, Any], int]:
    """A URL on the preview's own origin that lets the caller in once (then a cookie)."""
    project, caller = await caller_project(project_id)
    assert caller.claims is not None
    found = services()
    config = found.config
    status = await current_status(project.id)
    if status.status != Status.RUNNING or not status.container_id:
        raise APIError(
            409,
            "container_not_running",
            "the container is not running; start it first",
            details={"status": status.status},
        )
    if str(data.port) not in status.ports:
        raise APIError(
            409,
            "port_not_published",
            f"the container does not publish port {data.port}; ask for it in `ports` at start",
            details={"port": data.port, "ports": sorted(int(p) for p in status.ports)},
        )
    pid = str(project.id)
    preview_id = preview_id_for(config, pid, status.container_id, data.port)
    ttl = config.previews.ticket_ttl_s
    payload = {
        "preview_id": preview_id,
        "project_id": pid,
        "container_id": status.container_id,
        "port": data.port,
        "user_id": str(caller.user_id),
        "jti": caller.claims.jti,
        "expires_at": caller.claims.expires_at,
        "path": data.path,
        "exp": int(time.time()) + ttl,
        "aud": TICKET_AUDIENCE,
        "tid": new_opaque_token(),
    }
    ticket = jwt.encode(payload, preview_key(config), algorithm="HS256")
    await audit.record_after(
        "preview.opened",
        actor_id=caller.user_id,
        project_id=project.id,
        target=preview_id,
        details={"port": data.port},
    )
    origin = preview_origin(config, preview_id)
    return {
        "preview_id": preview_id,
        "port": data.port,
        "origin": origin,
        "url": f"{origin}{ENTER_PATH}?ticket={ticket}",
        "expires_in": ttl,
    }, 201
