"""The container client (vaporform/container_client.py) at the API's edge: the app's one client,
its failures as API errors, and the agent that serves a container's terminals and previews."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from vaporform.container_client import ContainerClient, ContainerUnavailable
from web.errors import APIError
from web.services import services
from workflows.containers.contract import ContainerStatus


def containers() -> ContainerClient:
    return services().containers


def unavailable(exc: Exception) -> APIError:
    return APIError(503, "workflow_unavailable", "the workflow service is unavailable, retry later")


@contextlib.contextmanager
def as_api_errors() -> Iterator[None]:
    """Temporal not answering is the API's 503 `workflow_unavailable`."""
    try:
        yield
    except ContainerUnavailable as exc:
        raise unavailable(exc) from exc


async def current_status(project_id: uuid.UUID) -> ContainerStatus:
    """What the project's workflow says; `stopped` when there has never been one."""
    with as_api_errors():
        return await containers().status(str(project_id))


async def touch(project_id: uuid.UUID, user_id: str) -> None:
    with as_api_errors():
        await containers().touch(str(project_id), user_id)


def agent_url(status: ContainerStatus) -> str:
    """The agent that serves the container's terminals and previews: the one its workflow
    recorded, or (workflows started before agents were recorded, or by the AI jobs) the one
    configured for its Docker queue."""
    return status.agent_url or services().config.agent.url_for(status.docker_queue)
