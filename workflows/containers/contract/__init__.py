"""Dataclasses of the container workflows and Docker activities.

One dataclass in, one dataclass out; every field has a default where a later addition must
not break callers. The reconciler's are in `contract/reconcile.py`; being modules of this
package, both pass through the workflow sandbox (`worker.passthrough_modules`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workflows.containers.names import DEFAULT_IDLE_TIMEOUT_S, Status, normalise_image


def pool_spec(image: str) -> ContainerSpec:
    """What a pool's members run: the image with default resources, no network, no ports.
    Requests for exactly this are served from the pool; anything else starts cold."""
    return ContainerSpec(image=normalise_image(image))


@dataclass(frozen=True)
class Resources:
    cpus: float = 1.0
    memory_mb: int = 512
    pids: int = 256


@dataclass(frozen=True)
class ContainerSpec:
    image: str
    resources: Resources = field(default_factory=Resources)
    ports: list[int] = field(default_factory=list)
    network: str = "none"  # "none" | "bridge"


# --- workflow input, state and messages -------------------------------------------------


@dataclass
class ContainerState:
    status: str = Status.STOPPED
    spec: ContainerSpec | None = None
    container_id: str | None = None
    # container port ("3000") -> the port on 127.0.0.1 of the Docker host
    ports: dict[str, int] = field(default_factory=dict)
    started_at: str | None = None  # ISO 8601
    idle_deadline: str | None = None  # ISO 8601
    error: str | None = None
    started_by: str | None = None
    generation: int = 0  # how many containers this project has had
    pool_id: str | None = None  # the warm pool that may serve the next provisioning


@dataclass(frozen=True)
class ContainerWorkflowInput:
    project_id: str
    user_id: str
    docker_queue: str
    idle_timeout_s: int = DEFAULT_IDLE_TIMEOUT_S
    # The agent of the Docker queue's host (terminals, previews); None: runs started before.
    agent_url: str | None = None
    # continue-as-new when the history grows past this many events
    max_history_events: int = 2_000
    health_timeout_s: float = 20.0
    state: ContainerState | None = None


@dataclass(frozen=True)
class EnsureRunningInput:
    spec: ContainerSpec
    requested_by: str
    # The warm pool whose members match `spec` (the client knows the pools); None: cold.
    pool_id: str | None = None
    # A running container is kept as it is whatever its spec (the AI jobs run in whatever the
    # user started); False: another spec replaces it.
    reuse_running: bool = False


@dataclass(frozen=True)
class StopInput:
    requested_by: str | None = None
    reason: str = "requested"


@dataclass(frozen=True)
class TouchInput:
    requested_by: str | None = None


@dataclass(frozen=True)
class VanishedInput:
    container_id: str


@dataclass(frozen=True)
class ContainerStatus:
    project_id: str
    workflow_id: str
    status: str
    container_id: str | None = None
    image: str | None = None
    ports: dict[str, int] = field(default_factory=dict)
    resources: Resources | None = None
    network: str | None = None
    started_at: str | None = None
    idle_deadline: str | None = None
    error: str | None = None
    docker_queue: str | None = None
    agent_url: str | None = None  # the agent serving its terminals and previews


# --- activity inputs and outputs ---------------------------------------------------------


@dataclass(frozen=True)
class ImageRef:
    image: str


@dataclass(frozen=True)
class ImageInfo:
    image: str
    image_id: str


@dataclass(frozen=True)
class WorkspaceInput:
    project_id: str


@dataclass(frozen=True)
class WorkspaceOutput:
    path: str


@dataclass(frozen=True)
class CreateContainerInput:
    project_id: str
    workflow_id: str
    created_by: str
    spec: ContainerSpec
    workspace: str


@dataclass(frozen=True)
class CreateContainerOutput:
    container_id: str
    reused: bool = False


@dataclass(frozen=True)
class ContainerRef:
    container_id: str


@dataclass(frozen=True)
class WaitHealthyInput:
    container_id: str
    timeout_s: float = 20.0


@dataclass(frozen=True)
class ContainerInfo:
    container_id: str
    exists: bool
    status: str | None = None  # Docker's: created, running, exited, ...
    ports: dict[str, int] = field(default_factory=dict)
    started_at: str | None = None
    exit_code: int | None = None
    oom_killed: bool = False


@dataclass(frozen=True)
class StopContainerInput:
    container_id: str
    timeout_s: int = 5


@dataclass(frozen=True)
class RemovedOutput:
    removed: bool


@dataclass(frozen=True)
class ExecInput:
    container_id: str
    command: list[str]
    timeout_s: float = 30.0
    output_cap_bytes: int = 256 * 1024


@dataclass(frozen=True)
class ExecOutput:
    exit_code: int
    stdout: str
    stderr: str
    duration_ms: int
    truncated: bool
    timed_out: bool


@dataclass(frozen=True)
class ExecWorkflowInput:
    project_id: str
    docker_queue: str
    exec: ExecInput


@dataclass(frozen=True)
class LogsInput:
    container_id: str
    tail: int = 200


@dataclass(frozen=True)
class LogsOutput:
    text: str


@dataclass(frozen=True)
class ListImagesInput:
    prefix: str = "vaporform/runtime-"


@dataclass(frozen=True)
class RuntimeImageInfo:
    name: str
    description: str
    size: int


@dataclass(frozen=True)
class ListImagesOutput:
    items: list[RuntimeImageInfo]


@dataclass(frozen=True)
class ListImagesWorkflowInput:
    docker_queue: str
    prefix: str = "vaporform/runtime-"


# --- the warm pool ------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolMember:
    container_id: str
    slot_id: str
    created_at: str = ""  # ISO 8601, workflow time


@dataclass(frozen=True)
class PoolClaim:
    request_id: str  # the claimer's deterministic id: a replayed claim gets the same member
    project_id: str
    member: PoolMember


@dataclass
class PoolState:
    size: int = 0
    ready: list[PoolMember] = field(default_factory=list)
    claims: list[PoolClaim] = field(default_factory=list)  # the latest MAX_POOL_CLAIMS
    failures: int = 0  # consecutive failed refills, for back-off
    last_error: str | None = None


MAX_POOL_CLAIMS = 200


@dataclass(frozen=True)
class PoolInput:
    docker_queue: str
    spec: ContainerSpec
    size: int = 2
    health_timeout_s: float = 20.0
    max_history_events: int = 2_000
    state: PoolState | None = None


@dataclass(frozen=True)
class PoolResizeInput:
    size: int


@dataclass(frozen=True)
class PoolMembersGoneInput:
    container_ids: list[str]


@dataclass(frozen=True)
class PoolClaimInput:
    pool_id: str
    request_id: str
    project_id: str
    spec: ContainerSpec


@dataclass(frozen=True)
class PoolClaimOutput:
    member: PoolMember | None = None


@dataclass(frozen=True)
class PoolStatus:
    pool_id: str
    image: str
    size: int
    ready: list[PoolMember] = field(default_factory=list)
    claims: list[PoolClaim] = field(default_factory=list)
    creating: int = 0
    last_error: str | None = None


@dataclass(frozen=True)
class CreateMemberInput:
    pool_id: str
    slot_id: str
    spec: ContainerSpec
    health_timeout_s: float = 20.0


@dataclass(frozen=True)
class DiscardMemberInput:
    slot_id: str
    container_id: str | None = None


@dataclass(frozen=True)
class AdoptInput:
    project_id: str
    workflow_id: str
    member: PoolMember
