"""The bodies of the container routes, and what a start request may ask for: the image, the
ports and network, the resources within the caller's quota."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from vaporform.container_client import InvalidImage, project_image
from vaporform.settings.containers import ContainerSettings, Quota
from web.errors import APIError
from workflows.containers.contract import ContainerSpec, ContainerStatus, Resources


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ResourcesIn(Strict):
    cpus: float = Field(default=1.0, gt=0, le=64)
    memory_mb: int = Field(default=512, ge=16, le=1024 * 1024)
    pids: int = Field(default=256, ge=16, le=1_000_000)


class ContainerIn(Strict):
    image: str | None = Field(default=None, max_length=200)
    resources: ResourcesIn = Field(default_factory=ResourcesIn)
    ports: list[int] = Field(default_factory=list, max_length=64)
    network: str = Field(default="none", pattern=r"^(none|bridge)$")


class ContainerOut(BaseModel):
    status: str
    workflow_id: str
    container_id: str | None
    image: str | None
    ports: dict[str, int]
    resources: dict[str, Any] | None
    network: str | None
    started_at: str | None
    idle_deadline: str | None
    error: str | None


class ExecIn(Strict):
    command: list[str] = Field(min_length=1, max_length=256)
    timeout_s: float = Field(default=30.0, gt=0)


class ExecOut(BaseModel):
    exit_code: int
    stdout: str
    stderr: str
    duration_ms: int
    truncated: bool
    timed_out: bool


class ImageOut(BaseModel):
    name: str
    description: str
    size: int


class ImageList(BaseModel):
    items: list[ImageOut]


def public(status: ContainerStatus) -> dict[str, Any]:
    """A container's status as the API answers it (`ContainerOut`)."""
    resources = status.resources
    return {
        "status": status.status,
        "workflow_id": status.workflow_id,
        "container_id": status.container_id,
        "image": status.image,
        "ports": status.ports,
        "resources": None
        if resources is None
        else {"cpus": resources.cpus, "memory_mb": resources.memory_mb, "pids": resources.pids},
        "network": status.network,
        "started_at": status.started_at,
        "idle_deadline": status.idle_deadline,
        "error": status.error,
    }


def _check_quota(data: ContainerIn, quota: Quota) -> None:
    asked = {
        "cpus": (data.resources.cpus, quota.cpus),
        "memory_mb": (data.resources.memory_mb, quota.memory_mb),
        "pids": (data.resources.pids, quota.pids),
        "ports": (len(data.ports), quota.ports),
    }
    for limit, (requested, maximum) in asked.items():
        if requested > maximum:
            raise APIError(
                400,
                "quota_exceeded",
                f"{limit} {requested} is over your limit of {maximum}",
                details={"limit": limit, "requested": requested, "maximum": maximum},
            )


def requested_spec(
    data: ContainerIn, project_config: dict[str, Any], role: str, settings: ContainerSettings
) -> ContainerSpec:
    """The spec a start request asks for, checked: a runtime image, distinct ports on a
    bridge network, resources within the quota of the caller's global role."""
    try:
        image = project_image(project_config, settings.default_image, data.image)
    except InvalidImage as exc:
        raise APIError(
            400,
            "invalid_image",
            "image must be one of the runtime images (GET /api/v1/images)",
            details={"image": exc.image},
        ) from exc
    if any(not 1 <= p <= 65535 for p in data.ports) or len(set(data.ports)) != len(data.ports):
        raise APIError(400, "invalid_ports", "ports must be distinct integers in 1..65535")
    if data.ports and data.network != "bridge":
        raise APIError(400, "ports_need_network", 'publishing ports needs "network": "bridge"')
    _check_quota(data, settings.quotas.get(role, settings.quotas["user"]))
    return ContainerSpec(
        image=image,
        resources=Resources(
            cpus=data.resources.cpus,
            memory_mb=data.resources.memory_mb,
            pids=data.resources.pids,
        ),
        ports=sorted(data.ports),
        network=data.network,
    )
