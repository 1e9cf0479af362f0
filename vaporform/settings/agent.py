"""The agent of a Docker host (agent/): where it listens, where the API finds it per Docker
queue, and the grants it accepts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from vaporform.settings.env import ConfigError, env_bool, env_int


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


def _agent_urls(env: Mapping[str, str], name: str) -> dict[str, str]:
    """`queue=url,queue=url`."""
    urls: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in (env.get(name) or "").split(","))):
        queue, _, url = part.partition("=")
        if not queue or not url.startswith(("http://", "https://")):
            raise ConfigError(f"{name}: expected docker-queue=http://host:port, got {part!r}")
        urls[queue.strip()] = url.strip().rstrip("/")
    return urls


def agent_settings(env: Mapping[str, str]) -> AgentSettings:
    base = AgentSettings()
    ttl = env_int(env, "VAPORFORM_AGENT_GRANT_TTL", base.grant_ttl_s)
    if not 1 <= ttl <= 30:
        raise ConfigError(f"VAPORFORM_AGENT_GRANT_TTL must be within 1..30 s, got {ttl}")
    secret = env.get("VAPORFORM_AGENT_SECRET") or None
    if secret is not None and len(secret) < 32:
        raise ConfigError("VAPORFORM_AGENT_SECRET must be at least 32 characters")
    return AgentSettings(
        host=env.get("VAPORFORM_AGENT_HOST") or base.host,
        port=env_int(env, "VAPORFORM_AGENT_PORT", base.port),
        urls=_agent_urls(env, "VAPORFORM_AGENT_URLS"),
        secret=secret,
        grant_ttl_s=ttl,
        in_worker=env_bool(env, "VAPORFORM_AGENT_IN_WORKER", base.in_worker),
    )
