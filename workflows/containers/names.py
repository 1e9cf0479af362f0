"""Names, labels, ids, error types, retry policies and the start metric of the container
workflows and the Docker activities: what both sides must agree on to find a container again.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

# Labels every container we create carries, so it can always be found again.
LABEL_MANAGED = "dev.vaporform.managed"
LABEL_PROJECT = "dev.vaporform.project"
LABEL_WORKFLOW = "dev.vaporform.workflow"
LABEL_CREATED_BY = "dev.vaporform.created-by"
# A warm-pool member carries the id of its pool workflow and of its slot folder. It keeps these
# labels after a project claims it (labels are fixed); the claim renames it `vaporform-<pid>`.
LABEL_POOL = "dev.vaporform.pool"
LABEL_SLOT = "dev.vaporform.slot"
POOL_NAME_PREFIX = "vaporform-pool-"

DEFAULT_IDLE_TIMEOUT_S = 30 * 60
RECONCILE_SCHEDULE_ID = "container-reconciler"

# Docker calls are short; a busy engine gets a few quick retries, not minutes of them.
DOCKER_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=5,
)
# Undoing must outlast a short engine hiccup: keep trying for about a minute.
COMPENSATION_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=10,
)

# Provisioning time, recorded through the SDK's meter (skipped on replay) with `path` warm or
# cold and `outcome` running or failed; exported with the SDK's metrics by the worker
# (vaporform/worker_metrics.py).
START_METRIC = "vaporform_container_start_seconds"

# Error types raised by the Docker activities as non-retryable ApplicationErrors.
IMAGE_NOT_FOUND = "ImageNotFound"
NOT_HEALTHY = "ContainerNotHealthy"
NAME_TAKEN = "ContainerNameTaken"
CONTAINER_GONE = "ContainerGone"


class Status:
    PROVISIONING = "provisioning"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


def container_workflow_id(project_id: str) -> str:
    return f"container-{project_id}"


def container_name(project_id: str) -> str:
    return f"vaporform-{project_id}"


def project_of_container_name(name: str) -> str | None:
    """The project id in `vaporform-<project_id>`; None for pool members and foreign names."""
    name = name.lstrip("/")
    if not name.startswith("vaporform-") or name.startswith(POOL_NAME_PREFIX):
        return None
    return name.removeprefix("vaporform-") or None


def normalise_image(image: str) -> str:
    """`name` means `name:latest`, as Docker reads it."""
    return image if ":" in image.rpartition("/")[2] else image + ":latest"


def pool_workflow_id(docker_queue: str, image: str) -> str:
    """One warm pool per Docker host and image: `container-pool-<queue>-<image>`."""
    slug = "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in image)
    return f"container-pool-{docker_queue}-{slug}"


def docker_task_queue(host: str) -> str:
    """The queue of the Docker activities of one engine: one worker per Docker host."""
    return f"docker-{host}"
