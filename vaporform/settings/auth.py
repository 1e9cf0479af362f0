"""Sign-in settings: tokens, login rate limits, the second factor, and the proxies whose
X-Forwarded-For is believed."""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vaporform.settings.env import ConfigError, env_bool, env_int


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


def jwt_settings(env: Mapping[str, str], data_dir: Path) -> JWTSettings:
    secret = env.get("VAPORFORM_JWT_SECRET") or dev_secret(data_dir)
    if len(secret) < 32:
        raise ConfigError("VAPORFORM_JWT_SECRET must be at least 32 characters")
    return JWTSettings(
        secret=secret,
        kid=env.get("VAPORFORM_JWT_KID") or "v1",
        issuer=env.get("VAPORFORM_JWT_ISSUER") or "vaporform",
        audience=env.get("VAPORFORM_JWT_AUDIENCE") or "vaporform-api",
        access_ttl_s=env_int(env, "VAPORFORM_JWT_ACCESS_TTL", 15 * 60),
        refresh_ttl_s=env_int(env, "VAPORFORM_JWT_REFRESH_TTL", 30 * 24 * 3600),
    )


def rate_limits(env: Mapping[str, str]) -> RateLimits:
    return RateLimits(
        login_per_email=env_int(env, "VAPORFORM_LOGIN_PER_EMAIL", 10),
        login_per_ip=env_int(env, "VAPORFORM_LOGIN_PER_IP", 50),
        login_window_s=env_int(env, "VAPORFORM_LOGIN_WINDOW", 60),
        register_per_ip=env_int(env, "VAPORFORM_REGISTER_PER_IP", 20),
    )


def mfa_settings(env: Mapping[str, str]) -> MFASettings:
    base = MFASettings()
    return MFASettings(
        required=env_bool(env, "VAPORFORM_REQUIRE_MFA", base.required),
        challenge_ttl_s=env_int(env, "VAPORFORM_MFA_CHALLENGE_TTL", base.challenge_ttl_s),
        issuer=env.get("VAPORFORM_MFA_ISSUER") or base.issuer,
    )


def networks(env: Mapping[str, str], name: str) -> tuple[Network, ...]:
    """Comma-separated CIDRs; a bare address is a network of one."""
    found: list[Network] = []
    for part in filter(None, (p.strip() for p in (env.get(name) or "").split(","))):
        try:
            found.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise ConfigError(f"{name}: {part!r} is not an address or CIDR") from exc
    return tuple(found)
