"""The client's address, seen through the reverse proxies we trust.

Each proxy appends the address it received the request from to `X-Forwarded-For`, so the list
reads client, proxy 1, proxy 2, ... and only its right end was written by machines we know.
Walking it from the right and skipping trusted proxies, the first address that is not one is
the client: whatever it put to the left of itself is not believed. With no trusted proxies
(`VAPORFORM_TRUSTED_PROXIES` unset) the header is ignored and the peer address is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from quart import has_request_context, has_websocket_context, request, websocket

from vaporform.settings.auth import Network
from web.services import services

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(raw: str) -> Address | None:
    """An address as peers and proxies write it (`1.2.3.4`, `1.2.3.4:80`, `[::1]:80`,
    `::ffff:1.2.3.4`), or None when it is none of these."""
    text = raw.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, proxies: Iterable[Network]) -> bool:
    return any(address.version == net.version and address in net for net in proxies)


def resolve(peer: str | None, forwarded_for: Sequence[str], proxies: Sequence[Network]) -> str:
    """The client address for a connection from `peer` carrying these X-Forwarded-For values
    (one per header line, in order)."""
    current = parse_address(peer or "")
    if current is None:
        return peer or "unknown"
    if not proxies:
        return str(current)
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    while _trusted(current, proxies) and hops:
        hop = parse_address(hops.pop())
        if hop is None:
            # Not something a proxy of ours writes: stop at the last address we could read.
            break
        current = hop
    return str(current)


def client_ip() -> str:
    """The client address of the current request or WebSocket."""
    if has_websocket_context():
        peer, headers = websocket.remote_addr, websocket.headers
    elif has_request_context():
        peer, headers = request.remote_addr, request.headers
    else:
        return "unknown"
    return resolve(peer, headers.getlist("X-Forwarded-For"), services().config.trusted_proxies)
