"""Metrics and traces: who may scrape, where the worker listens, where spans go."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vaporform.settings.env import ConfigError, env_int


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    """Metrics and traces (docs/observability.md)."""

    # `/metrics` of the API and the worker answers only this bearer token; None: not served.
    metrics_token: str | None = None
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = 9101  # 0: no metrics listener in the worker
    # Where spans go (OTLP over HTTP, protobuf); None: no traces are recorded.
    otlp_traces_endpoint: str | None = None


def telemetry_settings(env: Mapping[str, str]) -> TelemetrySettings:
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
        worker_metrics_port=env_int(env, "VAPORFORM_WORKER_METRICS_PORT", base.worker_metrics_port),
        otlp_traces_endpoint=endpoint,
    )
