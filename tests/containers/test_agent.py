"""The agent refuses everything but a fresh grant of the API, and uses each grant once.

These talk to the agent directly, as the API and the preview origin do. The preview relay is
pointed at a WebSocket echo on this host's loopback, where Docker publishes container ports
(tests/containers/test_no_docker.py does the same through a container).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import docker
import httpx
import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import InvalidStatus

from agent.grants import AUDIENCE, HEADER, MAX_TTL_S, agent_key, mint
from agent.terminal import belongs_to
from vaporform.config import Config
from workflows.containers.names import LABEL_MANAGED, LABEL_POOL, LABEL_PROJECT, container_name


@pytest.fixture(scope="module")
async def echo() -> AsyncIterator[int]:
    async def answer(ws: ServerConnection) -> None:
        await ws.send(f"path:{ws.request.path if ws.request else ''}")
        async for message in ws:
            await ws.send(message)

    async with serve(answer, "127.0.0.1", 0, compression=None) as server:
        yield next(iter(server.sockets)).getsockname()[1]


def grant(config: Config, port: int, **changes: object) -> str:
    return mint(
        agent_key(config),
        issuer=config.jwt.issuer,
        user_id="u",
        project_id="p",
        container_id="c",
        purpose="preview",
        port=port,
        **changes,  # type: ignore[arg-type]
    )


async def status_of(agent: str, token: str | None, path: str = "/v1/preview/x") -> int:
    url = agent.replace("http://", "ws://") + path
    try:
        async with connect(url, additional_headers={HEADER: token} if token else {}):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_preview_websocket_relays_frames_once_per_grant(
    agent: str, container_config: Config, echo: int
) -> None:
    token = grant(container_config, echo)
    url = agent.replace("http://", "ws://") + "/v1/preview/hmr/socket?v=2"
    async with connect(url, additional_headers={HEADER: token}, compression=None) as ws:
        assert await asyncio.wait_for(ws.recv(), 5) == "path:/hmr/socket?v=2"
        for message in ("hello", b"\x00\xffbytes", "x" * 200_000):
            await ws.send(message)
            assert await asyncio.wait_for(ws.recv(), 5) == message
    assert await status_of(agent, token) == 401  # used
    async with httpx.AsyncClient() as client:
        again = await client.get(agent + "/v1/preview/", headers={HEADER: token})
    assert again.status_code == 401


async def test_only_fresh_grants_of_the_api(
    agent: str, container_config: Config, echo: int
) -> None:
    assert await status_of(agent, None) == 401
    other = replace(container_config, jwt=replace(container_config.jwt, secret="z" * 48))
    assert await status_of(agent, grant(other, echo)) == 401  # another key
    now = int(time.time())
    claims = {
        "sub": "u",
        "project": "p",
        "container": "c",
        "purpose": "preview",
        "port": echo,
        "jti": "j1",
        "iat": now,
        "nbf": now,
        "exp": now + MAX_TTL_S + 30,
        "iss": container_config.jwt.issuer,
        "aud": AUDIENCE,
    }
    key = agent_key(container_config)
    assert await status_of(agent, jwt.encode(claims, key, algorithm="HS256")) == 401  # too long
    stale = {**claims, "jti": "j2", "iat": now - 60, "nbf": now - 60, "exp": now - 40}
    assert await status_of(agent, jwt.encode(stale, key, algorithm="HS256")) == 401
    access = {**claims, "jti": "j3", "exp": now + 10, "aud": "vaporform-api"}
    assert await status_of(agent, jwt.encode(access, key, algorithm="HS256")) == 401
    # A preview grant is not a terminal grant, and ports outside Docker's range are refused.
    assert await status_of(agent, grant(container_config, echo), "/v1/terminal") == 401
    assert await status_of(agent, grant(container_config, 22)) == 401
    terminal = mint(
        key,
        issuer=container_config.jwt.issuer,
        user_id="u",
        project_id="p",
        container_id="no-such-container",
        purpose="terminal",
    )
    assert await status_of(agent, terminal, "/v1/terminal") == 409


def test_a_claimed_pool_member_belongs_to_its_project(
    docker_client: docker.DockerClient, runtime_image: str
) -> None:
    """A warm-pool member is created before any project claims it, so it carries the pool's
    label, not the project's; the claim renames it. The agent must accept it by that name
    (a claimed member's terminal was refused under `make dev`, where the pool is on)."""
    project_id = str(uuid.uuid4())
    made = []
    try:
        claimed = docker_client.containers.create(
            runtime_image,
            name=container_name(project_id),
            labels={LABEL_MANAGED: "true", LABEL_POOL: "test-pool"},
        )
        made.append(claimed)
        labelled = docker_client.containers.create(
            runtime_image, labels={LABEL_MANAGED: "true", LABEL_PROJECT: project_id}
        )
        made.append(labelled)
        other = docker_client.containers.create(
            runtime_image, labels={LABEL_MANAGED: "true", LABEL_POOL: "test-pool"}
        )
        made.append(other)
        stranger = docker_client.containers.create(
            runtime_image, name=container_name(str(uuid.uuid4())) + "-x"
        )
        made.append(stranger)
        assert belongs_to(claimed, project_id)
        assert belongs_to(labelled, project_id)
        assert not belongs_to(other, project_id)
        assert not belongs_to(labelled, str(uuid.uuid4()))
        assert not belongs_to(stranger, project_id)
    finally:
        for container in made:
            container.remove(force=True)
