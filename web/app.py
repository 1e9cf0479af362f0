"""The app factory. Clients are created when serving starts and closed when it stops."""

from __future__ import annotations

import logging
import re
import time
import uuid

from quart import Quart, Response, g, request
from temporalio.client import Client as TemporalClient

from agent.workspace_sync import AgentWorkspaceSync
from collab.broker import open_broker
from collab.files import FileSystemFiles
from collab.hub import Hub
from files.factory import build_filesystem
from files.model import ChangeEvent
from files.service import FileSystem
from store import projects
from store.collab import create_lean_pool
from store.db import create_pool
from store.ephemeral import open_ephemeral
from vaporform import metrics
from vaporform.config import Config
from vaporform.container_client import ContainerClient
from vaporform.logs import request_id
from vaporform.temporal_setup import signal_files_changed
from vaporform.tracing import Tracing
from web import terminal
from web.announcer import Announcer
from web.auth import init_auth
from web.blueprints import admin as admin_bp
from web.blueprints import ai as ai_bp
from web.blueprints import audit as audit_bp
from web.blueprints import auth as auth_bp
from web.blueprints import chat as chat_bp
from web.blueprints import collab as collab_bp
from web.blueprints import containers as containers_bp
from web.blueprints import files as files_bp
from web.blueprints import health as health_bp
from web.blueprints import mfa as mfa_bp
from web.blueprints import previews as previews_bp
from web.blueprints import projects as projects_bp
from web.blueprints import session as session_bp
from web.blueprints import ui as ui_bp
from web.client_ip import client_ip
from web.errors import register_error_handlers
from web.limits import enforce_body_limit
from web.openapi import init_openapi
from web.passwords import Passwords
from web.revocation import init_revocation
from web.services import EXTENSION_KEY, Services
from web.socket_reads import DirectReads
from web.telemetry import init_telemetry

log = logging.getLogger("vaporform.web")

# A client's request id is echoed only if it is short and plain; anything else is replaced.
ANNOUNCER_KEY = "vaporform.announcer"
WORKSPACE_SYNC_KEY = "vaporform.workspace_sync"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


async def open_collab(config: Config, files: FileSystem, tracing: Tracing) -> Hub:
    # Commits get a pool of their own, of connections that skip the reset on release.
    pool = await create_lean_pool(config.database_url, max_size=max(2, config.db_pool_max // 2))
    metrics.track_pool("collab", pool)
    return Hub(
        pool,
        open_broker(config.redis_url, config.redis_prefix),
        FileSystemFiles(files),
        config.collab,
        tracer=tracing.tracer,
    )


async def close_collab(hub: Hub) -> None:
    """Checkpoint what is unsaved, then let go of the hub's broker and pool."""
    await hub.close()
    metrics.untrack_pool(hub.pool)
    await hub.pool.close()


def create_app(config: Config) -> Quart:
    # No default /static route: web/blueprints/ui.py serves the IDE's bundle there.
    app = Quart("vaporform", static_folder=None)
    # "a//b" must reach the path gate as written (and be refused), not be quietly merged.
    app.url_map.merge_slashes = False
    # A socket's handler reads its messages itself, without Quart's hop through a queue.
    app.asgi_websocket_class = DirectReads
    # An archive import of many files is one long transaction; Quart's default is 60 s.
    app.config["RESPONSE_TIMEOUT"] = 600
    # The largest body any route takes; web/limits.py gives each route its own, smaller cap.
    app.config["MAX_CONTENT_LENGTH"] = max(
        config.max_body_bytes, config.max_archive_bytes, config.max_file_bytes * 2
    )
    app.config["QUART_SCHEMA_CONVERSION_PREFERENCE"] = "pydantic"
    init_openapi(app)
    # First of the hooks: the route is noted before any other hook can refuse the request.
    tracing = Tracing("vaporform-api", config.telemetry.otlp_traces_endpoint)
    init_telemetry(app, tracing)
    init_auth(app)
    # Runs while serving, between the services' start and stop (web/revocation.py).
    init_revocation(app)
    register_error_handlers(app)
    app.register_blueprint(health_bp.blueprint)
    app.register_blueprint(auth_bp.blueprint)
    app.register_blueprint(mfa_bp.blueprint)
    app.register_blueprint(projects_bp.blueprint)
    app.register_blueprint(containers_bp.blueprint)
    app.register_blueprint(containers_bp.images_blueprint)
    app.register_blueprint(terminal.blueprint)
    app.register_blueprint(previews_bp.blueprint)
    app.register_blueprint(files_bp.blueprint)
    app.register_blueprint(collab_bp.blueprint)
    app.register_blueprint(chat_bp.blueprint)
    app.register_blueprint(ai_bp.blueprint)
    app.register_blueprint(audit_bp.blueprint)
    app.register_blueprint(admin_bp.blueprint)
    app.register_blueprint(session_bp.blueprint)
    app.register_blueprint(ui_bp.blueprint)

    @app.before_serving
    async def _start() -> None:
        pool = await create_pool(
            config.database_url, min_size=config.db_pool_min, max_size=config.db_pool_max
        )
        temporal = await TemporalClient.connect(
            config.temporal_address,
            namespace=config.temporal_namespace,
            lazy=True,
            interceptors=tracing.interceptors(),
        )
        metrics.track_pool("api", pool)

        async def signal(project_id: str, paths: list[str], origin: str) -> None:
            # A project being deleted is not signalled: the signal-with-start would start again
            # the versioning workflow that ProjectDeletion ends, and the announcer holds a
            # project's changes for up to a second (sockets the deletion closes also save their
            # files). Hiding commits before that workflow starts (store/outbox.py). A signal
            # sent just before the hiding commits still gets through; that run of the workflow
            # ends at its first batch (workflows/files/versioning.py), so this check only spares
            # Temporal the short run.
            async with pool.acquire() as conn:
                if not await projects.is_live(conn, uuid.UUID(project_id)):
                    return
            await signal_files_changed(temporal, config.task_queue, project_id, paths, origin)

        announcer = Announcer(signal)
        announcer.start()
        app.extensions[ANNOUNCER_KEY] = announcer
        containers = ContainerClient.from_settings(
            temporal,
            config.task_queue,
            config.containers,
            agent_url=config.agent.url_for(config.containers.docker_queue),
        )
        # The API keeps no workspace: committed changes go to the agent of the container's
        # host (agent/workspace_sync.py).
        workspace_sync = AgentWorkspaceSync(containers, config)
        app.extensions[WORKSPACE_SYNC_KEY] = workspace_sync
        files = build_filesystem(config, pool, workspace_sync=workspace_sync)
        hub = await open_collab(config, files, tracing)

        async def files_changed(event: ChangeEvent) -> None:
            await announcer(event)
            await hub.files_changed(event)

        # A write through the file system (REST, restore, archive import, checkpoints) goes to
        # the project's versioning workflow and, at once, to the live document of that path on
        # this node (other nodes hear of it from the workflow). Set once both exist: the hub
        # reads and writes through the file system.
        files.notifier = files_changed

        app.extensions[EXTENSION_KEY] = Services(
            config=config,
            pool=pool,
            ephemeral=open_ephemeral(config.redis_url, config.redis_prefix),
            temporal=temporal,
            passwords=Passwords(
                time_cost=config.argon2_time_cost,
                memory_kib=config.argon2_memory_kib,
                parallelism=config.argon2_parallelism,
            ),
            files=files,
            collab=hub,
            containers=containers,
        )

    @app.after_serving
    async def _stop() -> None:
        running: Services | None = app.extensions.get(EXTENSION_KEY)
        if running is not None:
            # Before the announcer stops: the last checkpoints are file writes to announce.
            await close_collab(running.collab)
        announcer: Announcer | None = app.extensions.pop(ANNOUNCER_KEY, None)
        if announcer is not None:
            await announcer.close()
        workspace_sync: AgentWorkspaceSync | None = app.extensions.pop(WORKSPACE_SYNC_KEY, None)
        if workspace_sync is not None:
            await workspace_sync.close()
        found: Services | None = app.extensions.pop(EXTENSION_KEY, None)
        if found is not None:
            metrics.untrack_pool(found.pool)
            await found.pool.close()
            await found.ephemeral.close()

    @app.before_request
    async def _begin() -> None:
        given = request.headers.get("X-Request-ID", "")
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        g.request_id = rid
        g.started = time.perf_counter()
        request_id.set(rid)
        enforce_body_limit(config.max_body_bytes, config)

    @app.after_request
    async def _finish(response: Response) -> Response:
        rid = getattr(g, "request_id", None) or uuid.uuid4().hex
        response.headers["X-Request-ID"] = rid
        started = getattr(g, "started", None)
        log.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "client_ip": client_ip(),
                "duration_ms": round((time.perf_counter() - started) * 1000, 2)
                if started
                else None,
            },
        )
        return response

    return app
