"""The environment's settings: an empty environment gives each domain's defaults, and a value we
cannot use is refused with a message that names its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from vaporform.config import Config, load_config
from vaporform.settings.agent import AgentSettings
from vaporform.settings.ai import AISettings
from vaporform.settings.auth import MFASettings, RateLimits
from vaporform.settings.blobs import BlobStoreSettings
from vaporform.settings.containers import ContainerSettings, Quota
from vaporform.settings.env import ConfigError
from vaporform.settings.previews import PreviewSettings
from vaporform.settings.telemetry import TelemetrySettings

SECRET = "a-jwt-secret-of-at-least-32-characters"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"VAPORFORM_DATA_DIR": str(tmp_path), "VAPORFORM_JWT_SECRET": SECRET}


def test_an_empty_environment_gives_the_defaults(env: dict[str, str]) -> None:
    config = load_config(env)
    defaults = Config()
    assert config.data_dir == Path(env["VAPORFORM_DATA_DIR"]).resolve()
    assert config.jwt.secret == SECRET
    assert config.jwt.access_ttl_s == defaults.jwt.access_ttl_s
    assert config.rate_limits == RateLimits()
    assert config.mfa == MFASettings()
    assert config.blob_store == BlobStoreSettings()
    assert config.blob_keys is None
    assert config.containers == ContainerSettings()
    assert config.agent == AgentSettings()
    assert config.previews == PreviewSettings()
    assert config.ai == AISettings()
    assert config.telemetry == TelemetrySettings()
    assert config.with_overrides(data_dir=defaults.data_dir, jwt=defaults.jwt) == defaults


def test_without_a_secret_one_is_kept_in_the_data_dir(tmp_path: Path) -> None:
    first = load_config({"VAPORFORM_DATA_DIR": str(tmp_path)}).jwt.secret
    assert len(first) >= 32
    assert (tmp_path / "jwt-secret").stat().st_mode & 0o777 == 0o600
    assert load_config({"VAPORFORM_DATA_DIR": str(tmp_path)}).jwt.secret == first


def test_domain_values_are_read(env: dict[str, str]) -> None:
    config = load_config(
        {
            **env,
            "VAPORFORM_QUOTA_USER": "cpus=1.5,ports=2",
            "VAPORFORM_POOL_IMAGES": "vaporform/runtime-busybox=1",
            "VAPORFORM_AGENT_URLS": "docker-b=http://10.0.0.2:8002/",
            "VAPORFORM_AGENT_IN_WORKER": "off",
            "VAPORFORM_PREVIEW_PORT": "9001",
            "VAPORFORM_AI_BUDGET_USER_USD": "2.5",
            "VAPORFORM_REQUIRE_MFA": "yes",
            "VAPORFORM_COLLAB_OP_RATE": "7",
        }
    )
    assert config.containers.quotas["user"] == Quota(cpus=1.5, ports=2)
    assert config.containers.pool_images == {"vaporform/runtime-busybox": 1}
    assert config.agent.url_for("docker-b") == "http://10.0.0.2:8002"
    assert config.agent.url_for("docker-default") == "http://127.0.0.1:8002"
    assert config.agent.in_worker is False
    assert config.previews.url == "http://{id}.preview.localhost:9001"
    assert config.ai.budget_user_usd == 2.5
    assert config.mfa.required is True
    assert config.collab.op_rate == 7.0


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"VAPORFORM_JWT_SECRET": "short"}, "VAPORFORM_JWT_SECRET must be at least 32 characters"),
        ({"VAPORFORM_API_PORT": "eighty"}, "VAPORFORM_API_PORT must be an integer, got 'eighty'"),
        ({"VAPORFORM_API_PORT": "-1"}, "VAPORFORM_API_PORT must not be negative, got -1"),
        ({"VAPORFORM_ACCESS_RECHECK_S": "nan"}, "VAPORFORM_ACCESS_RECHECK_S must not be negative"),
        ({"VAPORFORM_REQUIRE_MFA": "maybe"}, "VAPORFORM_REQUIRE_MFA must be true or false"),
        ({"VAPORFORM_QUOTA_ADMIN": "gpus=1"}, "VAPORFORM_QUOTA_ADMIN: unknown key 'gpus'"),
        ({"VAPORFORM_POOL_IMAGES": "busybox"}, "VAPORFORM_POOL_IMAGES: expected image=size"),
        ({"VAPORFORM_AGENT_GRANT_TTL": "31"}, "VAPORFORM_AGENT_GRANT_TTL must be within 1..30 s"),
        ({"VAPORFORM_AGENT_SECRET": "short"}, "VAPORFORM_AGENT_SECRET must be at least 32"),
        ({"VAPORFORM_AGENT_URLS": "q=10.0.0.2"}, "VAPORFORM_AGENT_URLS: expected docker-queue="),
        ({"VAPORFORM_PREVIEW_URL": "http://p.example/{id}"}, "VAPORFORM_PREVIEW_URL must name"),
        ({"VAPORFORM_AI_TIMEOUT_S": "soon"}, "VAPORFORM_AI_TIMEOUT_S must be a number"),
        ({"VAPORFORM_S3_ENDPOINT": "s3.example"}, "VAPORFORM_S3_ENDPOINT must be an http(s) URL"),
        ({"VAPORFORM_S3_ACCESS_KEY_ID": "id"}, "set both VAPORFORM_S3_ACCESS_KEY_ID"),
        ({"VAPORFORM_WORKER_METRICS_PORT": "x"}, "VAPORFORM_WORKER_METRICS_PORT must be an"),
    ],
)
def test_a_value_we_cannot_use_names_its_variable(
    env: dict[str, str], bad: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({**env, **bad})
    assert str(caught.value).startswith(message)
