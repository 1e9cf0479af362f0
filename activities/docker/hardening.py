"""The hardened settings every container we create runs with (DESIGN decision 3), a project's
or a warm pool member's alike, and the one image family allowed to run."""

from __future__ import annotations

from typing import Any

from docker.types import LogConfig
from temporalio.exceptions import ApplicationError

from vaporform.images import IMAGE_PREFIX, RUNTIME_UID
from workflows.containers.contract import ContainerSpec
from workflows.containers.names import IMAGE_NOT_FOUND

# The container's main process: does nothing until stopped. Work happens in execs/terminals.
KEEPALIVE = ["sleep", "infinity"]
TMPFS_OPTIONS = f"rw,nosuid,nodev,size=64m,uid={RUNTIME_UID},gid={RUNTIME_UID}"


def hardened_settings(spec: ContainerSpec, workspace: str) -> dict[str, Any]:
    """docker-py `containers.create` arguments of DESIGN decision 3; tests inspect each one."""
    memory = f"{spec.resources.memory_mb}m"
    settings: dict[str, Any] = {
        "user": f"{RUNTIME_UID}:{RUNTIME_UID}",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "read_only": True,
        "tmpfs": {"/tmp": TMPFS_OPTIONS},
        "mem_limit": memory,
        "memswap_limit": memory,  # no swap: the memory limit is the limit
        "nano_cpus": int(spec.resources.cpus * 1e9),
        "pids_limit": spec.resources.pids,
        "init": True,
        "network_mode": "bridge" if spec.network == "bridge" else "none",
        "volumes": {workspace: {"bind": "/workspace", "mode": "rw"}},
        "working_dir": "/workspace",
        "environment": {"HOME": "/workspace", "TMPDIR": "/tmp"},
        "ipc_mode": "private",
        "log_config": LogConfig(type="json-file", config={"max-size": "1m", "max-file": "2"}),
    }
    if spec.network == "bridge" and spec.ports:
        # Published on the loopback interface only: reachable through the API host, not the LAN.
        settings["ports"] = {f"{port}/tcp": ("127.0.0.1", None) for port in spec.ports}
    return settings


def check_runtime_image(spec: ContainerSpec) -> None:
    if not spec.image.startswith(IMAGE_PREFIX):
        raise ApplicationError(
            f"only {IMAGE_PREFIX}* images run here", type=IMAGE_NOT_FOUND, non_retryable=True
        )
