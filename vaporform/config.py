"""Configuration from environment variables, with defaults that work on one machine.

Every setting has one environment variable. Secrets that are not given are generated once and
kept in the data directory, so a restarted dev stack keeps accepting the tokens it issued.
The settings of each domain, and the reading of their variables, are in vaporform/settings/.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from collab.settings import CollabSettings
from store.blob_keys import BlobKeyring
from vaporform.settings.agent import AgentSettings, agent_settings
from vaporform.settings.ai import AISettings, ai_settings
from vaporform.settings.auth import (
    JWTSettings,
    MFASettings,
    Network,
    RateLimits,
    jwt_settings,
    mfa_settings,
    networks,
    rate_limits,
)
from vaporform.settings.blobs import BlobStoreSettings, blob_keys, blob_store_settings
from vaporform.settings.containers import ContainerSettings, container_settings
from vaporform.settings.env import env_float, env_int
from vaporform.settings.previews import PreviewSettings, preview_settings
from vaporform.settings.telemetry import TelemetrySettings, telemetry_settings

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/vaporform"
DEFAULT_TEMPORAL_ADDRESS = "127.0.0.1:7233"


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
    # Encryption at rest of file contents (store/blob_keys.py); None: blobs are plaintext.
    blob_keys: BlobKeyring | None = None
    blob_store: BlobStoreSettings = field(default_factory=BlobStoreSettings)
    jwt: JWTSettings = field(default_factory=lambda: JWTSettings(secret=""))
    rate_limits: RateLimits = field(default_factory=RateLimits)
    mfa: MFASettings = field(default_factory=MFASettings)
    # Reverse proxies in front of the API; empty: the peer address is the client.
    trusted_proxies: tuple[Network, ...] = ()
    collab: CollabSettings = field(default_factory=CollabSettings)
    containers: ContainerSettings = field(default_factory=ContainerSettings)
    agent: AgentSettings = field(default_factory=AgentSettings)
    previews: PreviewSettings = field(default_factory=PreviewSettings)
    ai: AISettings = field(default_factory=AISettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    # Cost of argon2id: OWASP's recommended minimum (19 MiB, 2 passes, 1 lane). argon2-cffi's
    # default (64 MiB, 3 passes, 4 lanes) costs ~200 ms per login on 2 cores; raise it with
    # VAPORFORM_ARGON2_* where logins are rare and cores plentiful.
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19456
    argon2_parallelism: int = 1
    db_pool_min: int = 2
    db_pool_max: int = 20
    # Open sockets are re-checked (membership, role, account, token) this often, whatever the
    # events say (web/revocation.py); at most 1 s keeps "closed within 2 s" when an event is lost.
    access_recheck_s: float = 1.0

    def with_overrides(self, **changes: Any) -> Config:
        return replace(self, **changes)


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """Read the configuration from `env` (the process environment by default)."""
    env = os.environ if env is None else env
    data_dir = Path(env.get("VAPORFORM_DATA_DIR") or ".data").resolve()
    jwt = jwt_settings(env, data_dir)
    limits = rate_limits(env)
    return Config(
        database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
        redis_url=env.get("REDIS_URL") or None,
        redis_prefix=env.get("VAPORFORM_REDIS_PREFIX") or "vf:",
        temporal_address=env.get("TEMPORAL_ADDRESS") or DEFAULT_TEMPORAL_ADDRESS,
        temporal_namespace=env.get("TEMPORAL_NAMESPACE") or "default",
        task_queue=env.get("VAPORFORM_TASK_QUEUE") or "vaporform",
        data_dir=data_dir,
        api_host=env.get("VAPORFORM_API_HOST") or "127.0.0.1",
        api_port=env_int(env, "VAPORFORM_API_PORT", 8000),
        log_level=(env.get("VAPORFORM_LOG_LEVEL") or "INFO").upper(),
        max_body_bytes=env_int(env, "VAPORFORM_MAX_BODY_BYTES", 1024 * 1024),
        max_file_bytes=env_int(env, "VAPORFORM_MAX_FILE_BYTES", 5 * 1024 * 1024),
        max_files_per_project=env_int(env, "VAPORFORM_MAX_FILES", 10_000),
        max_archive_bytes=env_int(env, "VAPORFORM_MAX_ARCHIVE_BYTES", 64 * 1024 * 1024),
        max_archive_entries=env_int(env, "VAPORFORM_MAX_ARCHIVE_ENTRIES", 10_000),
        blob_keys=blob_keys(env),
        blob_store=blob_store_settings(env),
        jwt=jwt,
        rate_limits=limits,
        mfa=mfa_settings(env),
        trusted_proxies=networks(env, "VAPORFORM_TRUSTED_PROXIES"),
        collab=CollabSettings(
            op_rate=float(env_int(env, "VAPORFORM_COLLAB_OP_RATE", 100)),
            op_burst=env_int(env, "VAPORFORM_COLLAB_OP_BURST", 200),
            commits_ahead=env_int(env, "VAPORFORM_COLLAB_COMMITS_AHEAD", 1),
        ),
        containers=container_settings(env),
        agent=agent_settings(env),
        previews=preview_settings(env),
        ai=ai_settings(env),
        telemetry=telemetry_settings(env),
        argon2_time_cost=env_int(env, "VAPORFORM_ARGON2_TIME_COST", 2),
        argon2_memory_kib=env_int(env, "VAPORFORM_ARGON2_MEMORY_KIB", 19456),
        argon2_parallelism=env_int(env, "VAPORFORM_ARGON2_PARALLELISM", 1),
        db_pool_min=env_int(env, "VAPORFORM_DB_POOL_MIN", 2),
        db_pool_max=env_int(env, "VAPORFORM_DB_POOL_MAX", 20),
        access_recheck_s=env_float(env, "VAPORFORM_ACCESS_RECHECK_S", 1.0),
    )
