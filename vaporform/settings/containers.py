"""Project containers: the Docker engine of this worker, the runtime image, timeouts, the warm
pool and the quotas per global role."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from vaporform.settings.env import ConfigError, env_int


@dataclass(frozen=True, slots=True)
class Quota:
    """The most one container may ask for."""

    cpus: float = 2.0
    memory_mb: int = 2048
    pids: int = 512
    ports: int = 4


@dataclass(frozen=True, slots=True)
class ContainerSettings:
    # Docker activities of this engine run on this queue; a second host is a second worker.
    docker_queue: str = "docker-default"
    docker_url: str | None = None  # None: DOCKER_HOST or the local socket
    default_image: str = "vaporform/runtime-python:latest"
    idle_timeout_s: int = 30 * 60
    health_timeout_s: int = 20
    reconcile_every_s: int = 300
    exec_max_timeout_s: int = 600
    exec_output_cap_bytes: int = 256 * 1024
    # Warm pool: started containers of the default image waiting to be claimed (0: none), and
    # pools of other images, e.g. VAPORFORM_POOL_IMAGES="vaporform/runtime-busybox=1".
    pool_size: int = 2
    pool_images: dict[str, int] = field(default_factory=dict)
    # Per global role (user, admin): requests beyond these answer 400 `quota_exceeded`.
    quotas: dict[str, Quota] = field(
        default_factory=lambda: {"user": Quota(), "admin": Quota(8.0, 16384, 4096, 16)}
    )


def _quota(env: Mapping[str, str], name: str, default: Quota) -> Quota:
    """`cpus=2,memory_mb=2048,pids=512,ports=4`; keys left out keep their default."""
    raw = env.get(name)
    if not raw:
        return default
    values: dict[str, float] = {}
    for part in raw.split(","):
        key, _, value = part.partition("=")
        key = key.strip()
        if key not in ("cpus", "memory_mb", "pids", "ports"):
            raise ConfigError(f"{name}: unknown key {key!r}")
        try:
            values[key] = float(value)
        except ValueError as exc:
            raise ConfigError(f"{name}: {key} must be a number, got {value!r}") from exc
    return Quota(
        cpus=values.get("cpus", default.cpus),
        memory_mb=int(values.get("memory_mb", default.memory_mb)),
        pids=int(values.get("pids", default.pids)),
        ports=int(values.get("ports", default.ports)),
    )


def _pool_images(env: Mapping[str, str], name: str) -> dict[str, int]:
    """`image=size,image=size`."""
    sizes: dict[str, int] = {}
    for part in filter(None, (env.get(name) or "").split(",")):
        image, _, size = part.strip().rpartition("=")
        if not image or not size.isdigit():
            raise ConfigError(f"{name}: expected image=size, got {part!r}")
        sizes[image] = int(size)
    return sizes


def container_settings(env: Mapping[str, str]) -> ContainerSettings:
    base = ContainerSettings()
    return ContainerSettings(
        docker_queue=env.get("VAPORFORM_DOCKER_QUEUE") or base.docker_queue,
        docker_url=env.get("DOCKER_HOST") or None,
        default_image=env.get("VAPORFORM_CONTAINER_IMAGE") or base.default_image,
        idle_timeout_s=env_int(env, "VAPORFORM_CONTAINER_IDLE_S", base.idle_timeout_s),
        health_timeout_s=env_int(env, "VAPORFORM_CONTAINER_HEALTH_S", base.health_timeout_s),
        reconcile_every_s=env_int(env, "VAPORFORM_RECONCILE_EVERY_S", base.reconcile_every_s),
        exec_max_timeout_s=env_int(env, "VAPORFORM_EXEC_MAX_TIMEOUT_S", base.exec_max_timeout_s),
        exec_output_cap_bytes=env_int(env, "VAPORFORM_EXEC_OUTPUT_CAP", base.exec_output_cap_bytes),
        pool_size=env_int(env, "VAPORFORM_POOL_SIZE", base.pool_size),
        pool_images=_pool_images(env, "VAPORFORM_POOL_IMAGES"),
        quotas={
            "user": _quota(env, "VAPORFORM_QUOTA_USER", base.quotas["user"]),
            "admin": _quota(env, "VAPORFORM_QUOTA_ADMIN", base.quotas["admin"]),
        },
    )
