"""The preview origin: where it listens, the origin of each preview, and its limits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vaporform.settings.env import ConfigError, env_float, env_int


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


def preview_settings(env: Mapping[str, str]) -> PreviewSettings:
    base = PreviewSettings()
    port = env_int(env, "VAPORFORM_PREVIEW_PORT", base.port)
    url = env.get("VAPORFORM_PREVIEW_URL") or f"http://{{id}}.preview.localhost:{port}"
    if "{id}" not in url.partition("://")[2].partition("/")[0]:
        raise ConfigError("VAPORFORM_PREVIEW_URL must name the preview id in its host: {id}")
    return PreviewSettings(
        host=env.get("VAPORFORM_PREVIEW_HOST") or base.host,
        port=port,
        url=url.rstrip("/"),
        max_body_bytes=env_int(env, "VAPORFORM_PREVIEW_MAX_BODY_BYTES", base.max_body_bytes),
        max_response_bytes=env_int(
            env, "VAPORFORM_PREVIEW_MAX_RESPONSE_BYTES", base.max_response_bytes
        ),
        timeout_s=env_float(env, "VAPORFORM_PREVIEW_TIMEOUT_S", base.timeout_s),
        max_request_s=env_float(env, "VAPORFORM_PREVIEW_MAX_REQUEST_S", base.max_request_s),
    )
