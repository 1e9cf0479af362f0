"""Running the agent: alone (`vaporform agent`) or inside the worker (worker.py)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig
from temporalio.client import Client

from agent.app import create_agent_app
from agent.proxy import proxy_server_config
from files.service import FileSystem
from vaporform.config import Config

log = logging.getLogger("vaporform.agent")


def agent_hypercorn_config(config: Config, *, quiet: bool = False) -> HypercornConfig:
    return proxy_server_config(
        f"{config.agent.host}:{config.agent.port}",
        config.previews.max_websocket_message_bytes,
        quiet=quiet,
    )


async def serve_agent(
    config: Config,
    docker_client: Any,
    stop: asyncio.Event,
    *,
    files: FileSystem | None = None,
    temporal: Client | None = None,
    quiet: bool = False,
) -> None:
    """Serve until `stop` is set. In the worker, `files` and `temporal` are the worker's (its
    pool and blob store); alone, the agent makes its own from `config`."""
    app = create_agent_app(config, docker_client, files=files, temporal=temporal)
    log.info("agent listening", extra={"address": f"{config.agent.host}:{config.agent.port}"})
    await serve(app, agent_hypercorn_config(config, quiet=quiet), shutdown_trigger=stop.wait)


async def run_agent(config: Config) -> int:
    """`vaporform agent`: the Docker engine of this host (DOCKER_HOST or the local socket), and
    its workspaces under the data dir (PostgreSQL, the blob store, Redis and Temporal as
    configured)."""
    import signal

    import docker
    import docker.errors

    try:
        url = config.containers.docker_url
        client = docker.DockerClient(base_url=url) if url else docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        log.error("no Docker engine: the agent cannot serve (%s)", exc)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await serve_agent(config, client, stop)
    finally:
        client.close()
    return 0
