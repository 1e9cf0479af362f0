"""Configuration from environment variables, with defaults that work on one machine.

Every setting has one environment variable. Secrets that are not given are generated once and
kept in the data directory, so a restarted dev stack keeps accepting the tokens it issued.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from collab.settings import CollabSettings
from store.blob_keys import BlobKeyring, parse_keyring

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
class MFASettings:
    """Second factor (TOTP). `required`: users without MFA may only enrol (docs/auth.md)."""

    required: bool = False
    challenge_ttl_s: int = 300  # between the password step and the code step of a login
    issuer: str = "Vaporform"  # the name authenticator apps show


# An address or network whose X-Forwarded-For hops are believed (web/client_ip.py).
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Quota:
    """The most one container may ask for."""

    cpus: float = 2.0
    memory_mb: int = 2048
    pids: int = 512
    ports: int = 4


@dataclass(frozen=True, slots=True)
class BlobStoreSettings:
    """Where file contents live (store/blobs.py): the data dir, or an S3 bucket that several
    API hosts share."""

    kind: str = "local"  # "local" | "s3"
    s3_endpoint: str | None = None  # None: AWS itself; e.g. http://127.0.0.1:8333 (SeaweedFS)
    s3_bucket: str = ""
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None  # None: the AWS_* environment / instance credentials
    s3_secret_access_key: str | None = None
    s3_prefix: str = "blobs"


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


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """The agent of a Docker host (agent/): terminals and previews under grants of the API."""

    host: str = "127.0.0.1"  # where `vaporform agent` listens (an internal address)
    port: int = 8002
    # The agent the API calls for containers of each Docker queue; a queue not listed uses
    # `default_url` (http://host:port).
    urls: dict[str, str] = field(default_factory=dict)
    # The key of grants, shared by the API and the agents only; None: derived from the JWT
    # secret (agent/grants.py), which suits one machine.
    secret: str | None = None
    grant_ttl_s: int = 30  # at most 30 (agent/grants.py refuses longer)
    in_worker: bool = True  # `vaporform worker` with a Docker engine also runs the agent

    @property
    def default_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    def url_for(self, docker_queue: str | None) -> str:
        return self.urls.get(docker_queue or "", self.default_url)


@dataclass(frozen=True, slots=True)
class PreviewSettings:
    """The preview origin (web/preview_origin.py): dev servers of containers, never on the
    API's origin. `url` names each preview's origin; `{id}` is the preview id."""

    host: str = "127.0.0.1"
    port: int = 8001
    url: str = "http://{id}.preview.localhost:8001"
    max_body_bytes: int = 32 * 1024 * 1024  # request bodies into a preview
    max_response_bytes: int = 256 * 1024 * 1024
    timeout_s: float = 60.0  # connect, and between two chunks of a body
    max_request_s: float = 600.0  # one whole exchange
    max_websocket_message_bytes: int = 4 * 1024 * 1024
    ticket_ttl_s: int = 30


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    """Metrics and traces (docs/observability.md)."""

    # `/metrics` of the API and the worker answers only this bearer token; None: not served.
    metrics_token: str | None = None
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = 9101  # 0: no metrics listener in the worker
    # Where spans go (OTLP over HTTP, protobuf); None: no traces are recorded.
    otlp_traces_endpoint: str | None = None


@dataclass(frozen=True, slots=True)
class AISettings:
    """The AI provider and what it may spend. No API key: the offline provider (ruff,
    Hypothesis)."""

    api_key: str | None = None
    base_url: str | None = None  # None: the SDK's default (or ANTHROPIC_BASE_URL)
    model: str = "claude-sonnet-4-6"
    request_timeout_s: float = 120.0
    # Spend allowed per project and per user, in US dollars; 0 refuses every new job.
    budget_project_usd: float = 50.0
    budget_user_usd: float = 20.0
    context_tokens: int = 60_000  # project files given to the model per job
    test_rounds: int = 2  # failing generated tests fed back to the model at most this often
    test_runs: int = 5  # a generated test is kept only if it passes this many runs in a row


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


def _pool_images(env: Mapping[str, str], name: str) -> dict[str, int]:
    """`image=size,image=size`."""
    sizes: dict[str, int] = {}
    for part in filter(None, (env.get(name) or "").split(",")):
        image, _, size = part.strip().rpartition("=")
        if not image or not size.isdigit():
            raise ConfigError(f"{name}: expected image=size, got {part!r}")
        sizes[image] = int(size)
    return sizes


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
        pool_size=_int(env, "VAPORFORM_POOL_SIZE", base.pool_size),
        pool_images=_pool_images(env, "VAPORFORM_POOL_IMAGES"),
        quotas={
            "user": _quota(env, "VAPORFORM_QUOTA_USER", base.quotas["user"]),
            "admin": _quota(env, "VAPORFORM_QUOTA_ADMIN", base.quotas["admin"]),
        },
    )


def _agent_urls(env: Mapping[str, str], name: str) -> dict[str, str]:
    """`queue=url,queue=url`."""
    urls: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in (env.get(name) or "").split(","))):
        queue, _, url = part.partition("=")
        if not queue or not url.startswith(("http://", "https://")):
            raise ConfigError(f"{name}: expected docker-queue=http://host:port, got {part!r}")
        urls[queue.strip()] = url.strip().rstrip("/")
    return urls


def _agent_settings(env: Mapping[str, str]) -> AgentSettings:
    base = AgentSettings()
    ttl = _int(env, "VAPORFORM_AGENT_GRANT_TTL", base.grant_ttl_s)
    if not 1 <= ttl <= 30:
        raise ConfigError(f"VAPORFORM_AGENT_GRANT_TTL must be within 1..30 s, got {ttl}")
    secret = env.get("VAPORFORM_AGENT_SECRET") or None
    if secret is not None and len(secret) < 32:
        raise ConfigError("VAPORFORM_AGENT_SECRET must be at least 32 characters")
    return AgentSettings(
        host=env.get("VAPORFORM_AGENT_HOST") or base.host,
        port=_int(env, "VAPORFORM_AGENT_PORT", base.port),
        urls=_agent_urls(env, "VAPORFORM_AGENT_URLS"),
        secret=secret,
        grant_ttl_s=ttl,
        in_worker=_bool(env, "VAPORFORM_AGENT_IN_WORKER", base.in_worker),
    )


def _preview_settings(env: Mapping[str, str]) -> PreviewSettings:
    base = PreviewSettings()
    port = _int(env, "VAPORFORM_PREVIEW_PORT", base.port)
    url = env.get("VAPORFORM_PREVIEW_URL") or f"http://{{id}}.preview.localhost:{port}"
    if "{id}" not in url.partition("://")[2].partition("/")[0]:
        raise ConfigError("VAPORFORM_PREVIEW_URL must name the preview id in its host: {id}")
    return PreviewSettings(
        host=env.get("VAPORFORM_PREVIEW_HOST") or base.host,
        port=port,
        url=url.rstrip("/"),
        max_body_bytes=_int(env, "VAPORFORM_PREVIEW_MAX_BODY_BYTES", base.max_body_bytes),
        max_response_bytes=_int(
            env, "VAPORFORM_PREVIEW_MAX_RESPONSE_BYTES", base.max_response_bytes
        ),
        timeout_s=_float(env, "VAPORFORM_PREVIEW_TIMEOUT_S", base.timeout_s),
        max_request_s=_float(env, "VAPORFORM_PREVIEW_MAX_REQUEST_S", base.max_request_s),
    )


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _networks(env: Mapping[str, str], name: str) -> tuple[Network, ...]:
    """Comma-separated CIDRs; a bare address is a network of one."""
    found: list[Network] = []
    for part in filter(None, (p.strip() for p in (env.get(name) or "").split(","))):
        try:
            found.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise ConfigError(f"{name}: {part!r} is not an address or CIDR") from exc
    return tuple(found)


def _mfa_settings(env: Mapping[str, str]) -> MFASettings:
    base = MFASettings()
    return MFASettings(
        required=_bool(env, "VAPORFORM_REQUIRE_MFA", base.required),
        challenge_ttl_s=_int(env, "VAPORFORM_MFA_CHALLENGE_TTL", base.challenge_ttl_s),
        issuer=env.get("VAPORFORM_MFA_ISSUER") or base.issuer,
    )


def _blob_store_settings(env: Mapping[str, str]) -> BlobStoreSettings:
    base = BlobStoreSettings()
    kind = (env.get("VAPORFORM_BLOB_STORE") or base.kind).strip().lower()
    if kind not in ("local", "s3"):
        raise ConfigError(f"VAPORFORM_BLOB_STORE must be local or s3, got {kind!r}")
    bucket = (env.get("VAPORFORM_S3_BUCKET") or "").strip()
    if kind == "s3" and len(bucket) < 3:
        raise ConfigError("VAPORFORM_BLOB_STORE=s3 needs VAPORFORM_S3_BUCKET (3+ characters)")
    endpoint = env.get("VAPORFORM_S3_ENDPOINT") or None
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"VAPORFORM_S3_ENDPOINT must be an http(s) URL, got {endpoint!r}")
    key_id = env.get("VAPORFORM_S3_ACCESS_KEY_ID") or None
    secret = env.get("VAPORFORM_S3_SECRET_ACCESS_KEY") or None
    if (key_id is None) != (secret is None):
        raise ConfigError(
            "set both VAPORFORM_S3_ACCESS_KEY_ID and VAPORFORM_S3_SECRET_ACCESS_KEY, or neither"
        )
    return BlobStoreSettings(
        kind=kind,
        s3_endpoint=endpoint,
        s3_bucket=bucket,
        s3_region=env.get("VAPORFORM_S3_REGION") or base.s3_region,
        s3_access_key_id=key_id,
        s3_secret_access_key=secret,
        s3_prefix=env.get("VAPORFORM_S3_PREFIX", base.s3_prefix).strip("/"),
    )


def _blob_keys(env: Mapping[str, str]) -> BlobKeyring | None:
    try:
        return parse_keyring(env.get("VAPORFORM_BLOB_KEY"), env.get("VAPORFORM_BLOB_KEYS"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if not value >= 0:  # also refuses NaN
        raise ConfigError(f"{name} must not be negative, got {raw}")
    return value


def _ai_settings(env: Mapping[str, str]) -> AISettings:
    base = AISettings()
    return AISettings(
        api_key=env.get("ANTHROPIC_API_KEY") or None,
        base_url=env.get("ANTHROPIC_BASE_URL") or None,
        model=env.get("VAPORFORM_AI_MODEL") or base.model,
        request_timeout_s=_float(env, "VAPORFORM_AI_TIMEOUT_S", base.request_timeout_s),
        budget_project_usd=_float(env, "VAPORFORM_AI_BUDGET_PROJECT_USD", base.budget_project_usd),
        budget_user_usd=_float(env, "VAPORFORM_AI_BUDGET_USER_USD", base.budget_user_usd),
        context_tokens=_int(env, "VAPORFORM_AI_CONTEXT_TOKENS", base.context_tokens),
        test_rounds=_int(env, "VAPORFORM_AI_TEST_ROUNDS", base.test_rounds),
        test_runs=_int(env, "VAPORFORM_AI_TEST_RUNS", base.test_runs),
    )


def _telemetry_settings(env: Mapping[str, str]) -> TelemetrySettings:
    base = TelemetrySettings()
    token = env.get("VAPORFORM_METRICS_TOKEN") or None
    if token is not None and len(token) < 16:
        raise ConfigError("VAPORFORM_METRICS_TOKEN must be at least 16 characters")
    # OpenTelemetry's own variables: the traces endpoint as given, or the base + /v1/traces.
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or None
    if endpoint is None and env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        endpoint = env["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
    return TelemetrySettings(
        metrics_token=token,
        worker_metrics_host=env.get("VAPORFORM_WORKER_METRICS_HOST") or base.worker_metrics_host,
        worker_metrics_port=_int(env, "VAPORFORM_WORKER_METRICS_PORT", base.worker_metrics_port),
        otlp_traces_endpoint=endpoint,
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
        blob_keys=_blob_keys(env),
        blob_store=_blob_store_settings(env),
        jwt=jwt,
        rate_limits=limits,
        mfa=_mfa_settings(env),
        trusted_proxies=_networks(env, "VAPORFORM_TRUSTED_PROXIES"),
        collab=CollabSettings(
            op_rate=float(_int(env, "VAPORFORM_COLLAB_OP_RATE", 100)),
            op_burst=_int(env, "VAPORFORM_COLLAB_OP_BURST", 200),
        ),
        containers=_container_settings(env),
        agent=_agent_settings(env),
        previews=_preview_settings(env),
        ai=_ai_settings(env),
        telemetry=_telemetry_settings(env),
        argon2_time_cost=_int(env, "VAPORFORM_ARGON2_TIME_COST", 2),
        argon2_memory_kib=_int(env, "VAPORFORM_ARGON2_MEMORY_KIB", 19456),
        argon2_parallelism=_int(env, "VAPORFORM_ARGON2_PARALLELISM", 1),
        db_pool_min=_int(env, "VAPORFORM_DB_POOL_MIN", 2),
        db_pool_max=_int(env, "VAPORFORM_DB_POOL_MAX", 20),
        access_recheck_s=_float(env, "VAPORFORM_ACCESS_RECHECK_S", 1.0),
    )
