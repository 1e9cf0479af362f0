"""Docker activities of the engine: images and the lifecycle of a container (create, start,
wait healthy, inspect, stop, remove, logs, list). Commands in a container are `exec.py`'s; the
settings every container runs with are `hardening.py`'s, its names and labels `naming.py`'s.

Every method is a sync activity (docker-py blocks) run on the worker's thread pool, on the task
queue of the Docker host the client points at. Calls are idempotent so Temporal may retry them:
create finds the project's container again by its name, stop and remove accept a container
that is already gone. Engine calls run under `beating`, which heartbeats while the call blocks,
so the workflows can use a short heartbeat timeout and a killed worker's call moves on fast.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.docker.hardening import KEEPALIVE, check_runtime_image, hardened_settings
from activities.docker.naming import may_hold_project_name, project_labels, role
from vaporform import metrics
from vaporform.images import LABEL_DESCRIPTION, RUNTIME_UID
from workflows.containers.contract import (
    ContainerInfo,
    ContainerRef,
    ContainerSpec,
    CreateContainerInput,
    CreateContainerOutput,
    ImageInfo,
    ImageRef,
    ListImagesInput,
    ListImagesOutput,
    LogsInput,
    LogsOutput,
    RemovedOutput,
    RuntimeImageInfo,
    StopContainerInput,
    WaitHealthyInput,
)
from workflows.containers.contract.reconcile import (
    ListContainersInput,
    ListContainersOutput,
    ManagedContainer,
)
from workflows.containers.names import (
    CONTAINER_GONE,
    IMAGE_NOT_FOUND,
    LABEL_MANAGED,
    LABEL_POOL,
    LABEL_PROJECT,
    LABEL_WORKFLOW,
    NAME_TAKEN,
    NOT_HEALTHY,
    container_name,
)

T = TypeVar("T")


def _ports(attrs: dict[str, Any]) -> dict[str, int]:
    found: dict[str, int] = {}
    for key, bindings in (attrs.get("NetworkSettings", {}).get("Ports") or {}).items():
        for binding in bindings or []:
            if binding.get("HostIp") in ("127.0.0.1", "") and binding.get("HostPort"):
                found[key.split("/")[0]] = int(binding["HostPort"])
    return found


def beating(calls: concurrent.futures.Executor, call: Callable[[], T], every_s: float = 0.5) -> T:
    """Run a blocking engine call on `calls` while this activity heartbeats every `every_s`."""
    future = calls.submit(call)
    while True:
        try:
            return future.result(timeout=every_s)
        except concurrent.futures.TimeoutError:
            activity.heartbeat()


def container_info(container: Any) -> ContainerInfo:
    state = container.attrs.get("State", {})
    return ContainerInfo(
        container_id=container.id,
        exists=True,
        status=state.get("Status"),
        ports=_ports(container.attrs),
        started_at=started_at_iso(state.get("StartedAt")),
        exit_code=state.get("ExitCode"),
        oom_killed=bool(state.get("OOMKilled")),
    )


class DockerActivities:
    def __init__(
        self,
        client: docker.DockerClient,
        data_dir: Path,
        calls: concurrent.futures.Executor | None = None,
    ) -> None:
        self._docker = client
        self._data_dir = data_dir
        # Where blocking engine calls run while the activity's own thread heartbeats.
        self._calls = calls or concurrent.futures.ThreadPoolExecutor(
            max_workers=8, thread_name_prefix="docker-call"
        )

    # --- images ---------------------------------------------------------------------

    @activity.defn(name="docker_ensure_image")
    def ensure_image(self, data: ImageRef) -> ImageInfo:
        try:
            image = beating(self._calls, lambda: self._docker.images.get(data.image))
        except docker.errors.ImageNotFound:
            raise ApplicationError(
                f"image {data.image} is not on this Docker host (vaporform images build)",
                type=IMAGE_NOT_FOUND,
                non_retryable=True,
            ) from None
        return ImageInfo(image=data.image, image_id=str(image.id))

    @activity.defn(name="docker_list_images")
    def list_images(self, data: ListImagesInput) -> ListImagesOutput:
        items: dict[str, RuntimeImageInfo] = {}
        for image in self._docker.images.list():
            for tag in image.tags:
                if tag.startswith(data.prefix):
                    labels = image.labels or {}
                    items[tag] = RuntimeImageInfo(
                        name=tag,
                        description=labels.get(LABEL_DESCRIPTION, ""),
                        size=int(image.attrs.get("Size", 0)),
                    )
        return ListImagesOutput(items=[items[k] for k in sorted(items)])

    # --- lifecycle ------------------------------------------------------------------

    @activity.defn(name="docker_create_container")
    def create_container(self, data: CreateContainerInput) -> CreateContainerOutput:
        check_runtime_image(data.spec)
        name = container_name(data.project_id)
        labels = project_labels(data.project_id, data.workflow_id, data.created_by)
        container = self.create_idle(data.spec, name, labels, data.workspace)
        if container is not None:
            return CreateContainerOutput(container_id=str(container.id))
        # The name is taken: a retry of this activity after a crash, or a leftover. Ours is
        # taken over (exactly one container per project); anything else is an error.
        existing = self._docker.containers.get(name)
        if not may_hold_project_name(existing.labels, data.project_id):
            raise ApplicationError(
                f"container name {name} is taken by a container that is not ours",
                type=NAME_TAKEN,
                non_retryable=True,
            )
        if existing.labels.get(LABEL_WORKFLOW) != data.workflow_id or existing.status not in (
            "created",
            "running",
        ):
            beating(self._calls, lambda: existing.remove(force=True))
            return self.create_container(data)
        return CreateContainerOutput(container_id=str(existing.id), reused=True)

    @activity.defn(name="docker_start_container")
    def start_container(self, data: ContainerRef) -> ContainerInfo:
        container = self._get(data.container_id)
        try:
            beating(self._calls, container.start)  # starting a running container is a no-op
        except docker.errors.APIError as exc:
            # The image cannot run our process (e.g. no `sleep`): retrying will not help.
            if exc.status_code in (400, 500) and "executable file not found" in str(exc):
                raise ApplicationError(
                    f"the container cannot start: {exc.explanation}",
                    type=NOT_HEALTHY,
                    non_retryable=True,
                ) from None
            raise
        container.reload()
        return container_info(container)

    @activity.defn(name="docker_wait_healthy")
    def wait_healthy(self, data: WaitHealthyInput) -> ContainerInfo:
        """Running, and an exec as the container's user answers: then it is usable."""
        deadline = time.monotonic() + data.timeout_s
        delay = 0.02
        user = f"{RUNTIME_UID}:{RUNTIME_UID}"
        while True:
            activity.heartbeat()
            container = self._get(data.container_id)
            state = container.attrs.get("State", {})
            if state.get("Status") == "running":
                probe = beating(self._calls, partial(container.exec_run, ["true"], user=user))
                if probe.exit_code == 0:
                    return container_info(container)
            elif state.get("Status") in ("exited", "dead"):
                logs = container.logs(tail=20).decode(errors="replace").strip()
                raise ApplicationError(
                    f"the container exited with code {state.get('ExitCode')}"
                    + (f": {logs}" if logs else ""),
                    type=NOT_HEALTHY,
                    non_retryable=True,
                )
            if time.monotonic() > deadline:
                raise ApplicationError(
                    f"the container was not healthy within {data.timeout_s:.0f} s",
                    type=NOT_HEALTHY,
                    non_retryable=True,
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    @activity.defn(name="docker_inspect_container")
    def inspect_container(self, data: ContainerRef) -> ContainerInfo:
        try:
            return container_info(self._docker.containers.get(data.container_id))
        except docker.errors.NotFound:
            return ContainerInfo(container_id=data.container_id, exists=False)

    @activity.defn(name="docker_stop_container")
    def stop_container(self, data: StopContainerInput) -> ContainerInfo:
        try:
            container = self._docker.containers.get(data.container_id)
            beating(self._calls, lambda: container.stop(timeout=data.timeout_s))
            container.reload()
            return container_info(container)
        except docker.errors.NotFound:
            return ContainerInfo(container_id=data.container_id, exists=False)

    @activity.defn(name="docker_remove_container")
    def remove_container(self, data: ContainerRef) -> RemovedOutput:
        try:
            container = self._docker.containers.get(data.container_id)
            beating(self._calls, lambda: container.remove(force=True, v=True))
        except docker.errors.NotFound:
            return RemovedOutput(removed=False)
        except docker.errors.APIError as exc:
            if exc.status_code == 409 and "already in progress" in str(exc):
                return RemovedOutput(removed=True)
            raise
        return RemovedOutput(removed=True)

    @activity.defn(name="docker_container_logs")
    def container_logs(self, data: LogsInput) -> LogsOutput:
        raw = self._get(data.container_id).logs(tail=data.tail)
        return LogsOutput(text=raw.decode(errors="replace"))

    @activity.defn(name="docker_list_containers")
    def list_containers(self, data: ListContainersInput) -> ListContainersOutput:
        filters = [f"{LABEL_MANAGED}=true"]
        if data.project_id:
            filters.append(f"{LABEL_PROJECT}={data.project_id}")
        found = self._docker.containers.list(all=True, filters={"label": filters})
        return ListContainersOutput(
            items=[
                ManagedContainer(
                    container_id=str(c.id),
                    name=str(c.name),
                    project_id=c.labels.get(LABEL_PROJECT, ""),
                    workflow_id=c.labels.get(LABEL_WORKFLOW, ""),
                    status=c.status,
                    created_at=c.attrs.get("Created", ""),
                    pool_id=c.labels.get(LABEL_POOL, ""),
                )
                for c in found
            ]
        )

    # --- helpers --------------------------------------------------------------------

    def create_idle(
        self, spec: ContainerSpec, name: str, labels: dict[str, str], workspace: str
    ) -> Any | None:
        """Create (not start) a hardened container that idles; None when `name` is taken."""
        try:
            return beating(
                self._calls,
                lambda: self._docker.containers.create(
                    spec.image,
                    command=KEEPALIVE,
                    name=name,
                    hostname="workspace",
                    labels=labels,
                    **hardened_settings(spec, workspace),
                ),
            )
        except docker.errors.ImageNotFound:
            raise ApplicationError(
                f"image {spec.image} is not on this Docker host (vaporform images build)",
                type=IMAGE_NOT_FOUND,
                non_retryable=True,
            ) from None
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise
            return None

    def _get(self, container_id: str) -> Any:
        try:
            return self._docker.containers.get(container_id)
        except docker.errors.NotFound:
            raise ApplicationError(
                f"container {container_id[:12]} is gone", type=CONTAINER_GONE, non_retryable=True
            ) from None

    def all(self) -> list[Any]:
        return [
            self.ensure_image,
            self.list_images,
            self.create_container,
            self.start_container,
            self.wait_healthy,
            self.inspect_container,
            self.stop_container,
            self.remove_container,
            self.container_logs,
            self.list_containers,
        ]


def container_census(client: docker.DockerClient) -> None:
    """Set `vaporform_containers` from the engine: our containers by state and role (one list
    call, no inspection of each)."""
    counts: dict[tuple[str, str], int] = {}
    for found in client.api.containers(all=True, filters={"label": f"{LABEL_MANAGED}=true"}):
        names = found.get("Names") or [""]
        key = (str(found.get("State") or "unknown"), role(names[0]))
        counts[key] = counts.get(key, 0) + 1
    metrics.set_containers(counts)


def started_at_iso(value: str | None) -> str | None:
    """Docker's nanosecond timestamps, shortened to what `datetime` parses."""
    if not value or value.startswith("0001-"):
        return None
    head, _, rest = value.partition(".")
    fraction = "".join(ch for ch in rest if ch.isdigit())[:6]
    return datetime.fromisoformat(f"{head}.{fraction or '0'}+00:00").isoformat()
