"""Start, resize or drain the warm pools of one Docker host (called by the worker at start)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from workflows.container_pool import ContainerPoolWorkflow
from workflows.container_shared import (
    PoolInput,
    PoolResizeInput,
    normalise_image,
    pool_spec,
    pool_workflow_id,
)


def configured_pools(
    default_image: str, default_size: int, others: dict[str, int]
) -> dict[str, int]:
    """{image: size} of every pool the settings ask for (size 0: drain it)."""
    sizes = {normalise_image(image): size for image, size in others.items()}
    sizes[normalise_image(default_image)] = default_size
    return sizes


async def ensure_pools(
    client: Client,
    task_queue: str,
    docker_queue: str,
    sizes: dict[str, int],
    health_timeout_s: float = 20.0,
) -> list[str]:
    """Signal-with-start each pool with its size; a size of 0 drains a running pool (it then
    completes). Returns the ids of the pools asked to run."""
    started: list[str] = []
    for image, size in sorted(sizes.items()):
        pool_id = pool_workflow_id(docker_queue, image)
        resize = PoolResizeInput(size)
        if size <= 0:
            try:
                await client.get_workflow_handle(pool_id).signal(
                    ContainerPoolWorkflow.resize, resize
                )
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
            continue
        await client.start_workflow(
            ContainerPoolWorkflow.run,
            PoolInput(
                docker_queue=docker_queue,
                spec=pool_spec(image),
                size=size,
                health_timeout_s=health_timeout_s,
            ),
            id=pool_id,
            task_queue=task_queue,
            start_signal="resize",
            start_signal_args=[resize],
        )
        started.append(pool_id)
    return started
