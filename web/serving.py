"""Hypercorn settings shared by `vaporform api`, the tests and the benchmarks."""

from __future__ import annotations

from hypercorn.config import Config as HypercornConfig

from vaporform.config import Config

# The collaboration protocol's largest message is 256 KiB (collab/settings.py); a terminal
# frame is far smaller. Anything bigger is refused by hypercorn before it is buffered.
WEBSOCKET_MAX_MESSAGE_BYTES = 1024 * 1024


def hypercorn_config(config: Config, *, quiet: bool = False) -> HypercornConfig:
    hconfig = HypercornConfig()
    hconfig.bind = [f"{config.api_host}:{config.api_port}"]
    hconfig.accesslog = None  # our own request log is JSON and carries the request id
    if quiet:
        hconfig.errorlog = None
    hconfig.graceful_timeout = 5
    hconfig.websocket_max_message_size = WEBSOCKET_MAX_MESSAGE_BYTES
    return hconfig
