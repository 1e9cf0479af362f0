"""The client address behind reverse proxies: which X-Forwarded-For hop rate limits and logs
use, with and without VAPORFORM_TRUSTED_PROXIES."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from tests.conftest import api_client
from tests.support import assert_error, unique_email
from vaporform.config import Config, load_config
from vaporform.settings.auth import RateLimits
from vaporform.settings.env import ConfigError
from web.client_ip import resolve

LOGIN = "/api/v1/auth/login"


def _nets(*cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


PROXIES = _nets("127.0.0.1/32", "10.0.0.0/8", "fd00::/8")


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "proxies", "client"),
    [
        # No trusted proxies: the header is ignored, whatever it says.
        ("127.0.0.1", ["203.0.113.7"], (), "127.0.0.1"),
        # A peer we do not trust cannot speak for anyone else.
        ("198.51.100.1", ["203.0.113.7"], PROXIES, "198.51.100.1"),
        ("127.0.0.1", ["203.0.113.7"], PROXIES, "203.0.113.7"),
        # What the client wrote itself (the left part) is not believed.
        ("127.0.0.1", ["6.6.6.6, 203.0.113.7"], PROXIES, "203.0.113.7"),
        # Through two trusted proxies; several header lines read as one list.
        ("127.0.0.1", ["6.6.6.6, 203.0.113.7, 10.1.2.3"], PROXIES, "203.0.113.7"),
        ("127.0.0.1", ["6.6.6.6, 203.0.113.7", "10.1.2.3"], PROXIES, "203.0.113.7"),
        # Every hop trusted: the leftmost is the best we know.
        ("127.0.0.1", ["10.9.9.9, 10.1.2.3"], PROXIES, "10.9.9.9"),
        # No header: the peer.
        ("127.0.0.1", [], PROXIES, "127.0.0.1"),
        # Ports, brackets, IPv6 and IPv4-mapped forms.
        ("127.0.0.1", ["203.0.113.7:4711"], PROXIES, "203.0.113.7"),
        ("127.0.0.1", ["[2001:db8::1]:443"], PROXIES, "2001:db8::1"),
        ("fd00::5", ["2001:db8::1"], PROXIES, "2001:db8::1"),
        ("::ffff:127.0.0.1", ["203.0.113.7"], PROXIES, "203.0.113.7"),
        ("127.0.0.1", ["203.0.113.7, ::ffff:10.1.2.3"], PROXIES, "203.0.113.7"),
        # A hop that is no address stops the walk at the last address read.
        ("127.0.0.1", ["203.0.113.7, unknown"], PROXIES, "127.0.0.1"),
        ("127.0.0.1", ["garbage, 10.1.2.3"], PROXIES, "10.1.2.3"),
    ],
)
def test_resolve(
    peer: str,
    forwarded_for: list[str],
    proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
    client: str,
) -> None:
    assert resolve(peer, forwarded_for, proxies) == client


def test_the_setting_is_read_as_cidrs(tmp_path: Path) -> None:
    env = {"VAPORFORM_JWT_SECRET": "s" * 40, "VAPORFORM_DATA_DIR": str(tmp_path)}
    assert load_config(env).trusted_proxies == ()
    found = load_config({**env, "VAPORFORM_TRUSTED_PROXIES": " 10.0.0.0/8, 192.168.1.7,fd00::/8"})
    assert found.trusted_proxies == _nets("10.0.0.0/8", "192.168.1.7/32", "fd00::/8")
    with pytest.raises(ConfigError, match="VAPORFORM_TRUSTED_PROXIES"):
        load_config({**env, "VAPORFORM_TRUSTED_PROXIES": "10.0.0.0/8,proxy.internal"})


def _logged_clients(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The `client_ip` field of each request log line for /healthz, oldest first."""
    return [
        str(vars(record)["client_ip"])
        for record in caplog.records
        if record.getMessage() == "request" and vars(record).get("path") == "/healthz"
    ]


def _attempt() -> dict[str, str]:
    return {"email": unique_email(), "password": "wrong password"}


@pytest.fixture
async def behind_proxy(
    config: Config, run_id: str, request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    """A server whose per-address login limit is 2, trusting the test client (127.0.0.1) and
    10.0.0.0/8 as proxies."""
    strict = replace(
        config,
        redis_prefix=f"vf-test-{run_id}-{request.node.name}:",
        rate_limits=RateLimits(login_per_email=100, login_per_ip=2, login_window_s=60),
        trusted_proxies=_nets("127.0.0.1/32", "10.0.0.0/8"),
    )
    async with api_client(strict) as client:
        yield client


async def test_rate_limits_count_the_forwarded_client(behind_proxy: httpx.AsyncClient) -> None:
    first = {"X-Forwarded-For": "203.0.113.7"}
    for _ in range(2):
        response = await behind_proxy.post(LOGIN, json=_attempt(), headers=first)
        assert_error(response, 401, "invalid_credentials")
    assert_error(await behind_proxy.post(LOGIN, json=_attempt(), headers=first), 429)
    # Another client behind the same proxy has its own count.
    other = {"X-Forwarded-For": "203.0.113.8"}
    assert_error(await behind_proxy.post(LOGIN, json=_attempt(), headers=other), 401)
    # The limited client cannot escape by writing a hop of its own to the left ...
    forged = {"X-Forwarded-For": "198.51.100.99, 203.0.113.7"}
    assert_error(await behind_proxy.post(LOGIN, json=_attempt(), headers=forged), 429)
    # ... and is found behind a second, internal proxy too.
    chained = {"X-Forwarded-For": "203.0.113.7, 10.4.5.6"}
    assert_error(await behind_proxy.post(LOGIN, json=_attempt(), headers=chained), 429)


async def test_the_request_log_names_the_forwarded_client(
    behind_proxy: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="vaporform.web"):
        response = await behind_proxy.get(
            "/healthz", headers={"X-Forwarded-For": "203.0.113.9, 10.0.0.1"}
        )
    assert response.status_code == 200
    assert _logged_clients(caplog)[-1] == "203.0.113.9"


async def test_without_trusted_proxies_the_header_is_ignored(
    config: Config, run_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    strict = replace(
        config,
        redis_prefix=f"vf-test-{run_id}-no-proxies:",
        rate_limits=RateLimits(login_per_email=100, login_per_ip=2, login_window_s=60),
    )
    async with api_client(strict) as http:
        for n in range(2):
            headers = {"X-Forwarded-For": f"203.0.113.{n + 1}"}
            assert_error(await http.post(LOGIN, json=_attempt(), headers=headers), 401)
        # A new forwarded address changes nothing: the peer (127.0.0.1) is the client.
        headers = {"X-Forwarded-For": "203.0.113.99"}
        assert_error(await http.post(LOGIN, json=_attempt(), headers=headers), 429)
        with caplog.at_level(logging.INFO, logger="vaporform.web"):
            await http.get("/healthz", headers=headers)
    assert _logged_clients(caplog)[-1] == "127.0.0.1"
