"""Configuration from environment variables, with defaults that work on one machine.

Every setting has one environment variable. Secrets that are not given are generated once and
kept in the data directory, so a restarted dev stack keeps accepting the tokens it issued.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from collab.settings import CollabSettings

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/vaporform"
DEFAULT_TEMPORAL_ADDRESS = "127.0.0.1:7233"


class ConfigError(ValueError):
    """A setting has a value we cannot use."""


@dataclass(frozen=True, slots=True)
class JWTSettings:
    secret: str
    kid: str = "v1"
    issuer: str = "vaporform"
    audience: str = "vaporform-api"
    algorithm: str = "HS256"
    access_ttl_s: int = 15 * 60
    refresh_ttl_s: int = 30 * 24 * 3600
    ws_ticket_ttl_s: int = 30


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Login attempts allowed per window, per email and per client address."""

    login_per_email: int = 10
    login_per_ip: int = 50
    login_window_s: int = 60
    register_per_ip: int = 20


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
    # Per global role (user, admin): requests beyond these answer 400 `quota_exceeded`.
    quotas: dict[str, Quota] = field(
        default_factory=lambda: {"user": Quota(), "admin": Quota(8.0, 16384, 4096, 16)}
    )


@dataclass(frozen=True, slots=True)
class Config:
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    # Every key this deployment writes to Redis starts with this, so deployments can share one.
    redis_prefix: str = "vf:"
    temporal_address: str = DEFAULT_TEMPORAL_ADDRESS
    temporal_namespace: str = "default"
    task_queue: str = "vaporform"
    data_dir: Path = Path(".data")
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    log_level: str = "INFO"
    max_body_bytes: int = 1024 * 1024
    max_file_bytes: int = 5 * 1024 * 1024
    max_files_per_project: int = 10_000
    max_archive_bytes: int = 64 * 1024 * 1024
    max_archive_entries: int = 10_000
    jwt: JWTSettings = field(default_factory=lambda: JWTSettings(secret=""))
    rate_limits: RateLimits = field(default_factory=RateLimits)
    collab: CollabSettings = field(default_factory=CollabSettings)
    containers: ContainerSettings = field(default_factory=ContainerSettings)
    # Cost of argon2id: OWASP's recommended minimum (19 MiB, 2 passes, 1 lane). argon2-cffi's
    # default (64 MiB, 3 passes, 4 lanes) costs ~200 ms per login on 2 cores; raise it with
    # VAPORFORM_ARGON2_* where logins are rare and cores plentiful.
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19456
    argon2_parallelism: int = 1
    db_pool_min: int = 2
    db_pool_max: int = 20

    def with_overrides(self, **changes: Any) -> Config:
        return replace(self, **changes)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {value}")
    return value


def dev_secret(data_dir: Path) -> str:
    """The signing secret kept in the data dir, created with mode 0600 on first use."""
    path = data_dir / "jwt-secret"
    try:
        secret = path.read_text().strip()
        if secret:
            return secret
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret)
    return secret


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


def _container_settings(env: Mapping[str, str]) -> ContainerSettings:
    base = ContainerSettings()
    return ContainerSettings(
        docker_queue=env.get("VAPORFORM_DOCKER_QUEUE") or base.docker_queue,
        docker_url=env.get("DOCKER_HOST") or None,
        default_image=env.get("VAPORFORM_CONTAINER_IMAGE") or base.default_image,
        idle_timeout_s=_int(env, "VAPORFORM_CONTAINER_IDLE_S", base.idle_timeout_s),
        health_timeout_s=_int(env, "VAPORFORM_CONTAINER_HEALTH_S", base.health_timeout_s),
        reconcile_every_s=_int(env, "VAPORFORM_RECONCILE_EVERY_S", base.reconcile_every_s),
        exec_max_timeout_s=_int(env, "VAPORFORM_EXEC_MAX_TIMEOUT_S", base.exec_max_timeout_s),
        exec_output_cap_bytes=_int(env, "VAPORFORM_EXEC_OUTPUT_CAP", base.exec_output_cap_bytes),
        quotas={
            "user": _quota(env, "VAPORFORM_QUOTA_USER", base.quotas["user"]),
            "admin": _quota(env, "VAPORFORM_QUOTA_ADMIN", base.quotas["admin"]),
        },
    )


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """Read the configuration from `env` (the process environment by default)."""
    env = os.environ if env is None else env
    data_dir = Path(env.get("VAPORFORM_DATA_DIR") or ".data").resolve()
    secret = env.get("VAPORFORM_JWT_SECRET") or dev_secret(data_dir)
    if len(secret) < 32:
        raise ConfigError("VAPORFORM_JWT_SECRET must be at least 32 characters")
    jwt = JWTSettings(
        secret=secret,
        kid=env.get("VAPORFORM_JWT_KID") or "v1",
        issuer=env.get("VAPORFORM_JWT_ISSUER") or "vaporform",
        audience=env.get("VAPORFORM_JWT_AUDIENCE") or "vaporform-api",
        access_ttl_s=_int(env, "VAPORFORM_JWT_ACCESS_TTL", 15 * 60),
        refresh_ttl_s=_int(env, "VAPORFORM_JWT_REFRESH_TTL", 30 * 24 * 3600),
    )
    limits = RateLimits(
        login_per_email=_int(env, "VAPORFORM_LOGIN_PER_EMAIL", 10),
        login_per_ip=_int(env, "VAPORFORM_LOGIN_PER_IP", 50),
        login_window_s=_int(env, "VAPORFORM_LOGIN_WINDOW", 60),
        register_per_ip=_int(env, "VAPORFORM_REGISTER_PER_IP", 20),
    )
    return Config(
        database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
        redis_url=env.get("REDIS_URL") or None,
        redis_prefix=env.get("VAPORFORM_REDIS_PREFIX") or "vf:",
        temporal_address=env.get("TEMPORAL_ADDRESS") or DEFAULT_TEMPORAL_ADDRESS,
        temporal_namespace=env.get("TEMPORAL_NAMESPACE") or "default",
        task_queue=env.get("VAPORFORM_TASK_QUEUE") or "vaporform",
        data_dir=data_dir,
        api_host=env.get("VAPORFORM_API_HOST") or "127.0.0.1",
        api_port=_int(env, "VAPORFORM_API_PORT", 8000),
        log_level=(env.get("VAPORFORM_LOG_LEVEL") or "INFO").upper(),
        max_body_bytes=_int(env, "VAPORFORM_MAX_BODY_BYTES", 1024 * 1024),
        max_file_bytes=_int(env, "VAPORFORM_MAX_FILE_BYTES", 5 * 1024 * 1024),
        max_files_per_project=_int(env, "VAPORFORM_MAX_FILES", 10_000),
        max_archive_bytes=_int(env, "VAPORFORM_MAX_ARCHIVE_BYTES", 64 * 1024 * 1024),
        max_archive_entries=_int(env, "VAPORFORM_MAX_ARCHIVE_ENTRIES", 10_000),
        jwt=jwt,
        rate_limits=limits,
        containers=_container_settings(env),
        argon2_time_cost=_int(env, "VAPORFORM_ARGON2_TIME_COST", 2),
        argon2_memory_kib=_int(env, "VAPORFORM_ARGON2_MEMORY_KIB", 19456),
        argon2_parallelism=_int(env, "VAPORFORM_ARGON2_PARALLELISM", 1),
        db_pool_min=_int(env, "VAPORFORM_DB_POOL_MIN", 2),
        db_pool_max=_int(env, "VAPORFORM_DB_POOL_MAX", 20),
    )
