"""`vaporform api` and `vaporform previews`: one listener each, until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from vaporform.commands.startup import StartupError
from vaporform.config import Config


def multiprocess_metrics(config: Config) -> Path:
    """Several API processes share one port, so any of them answers a scrape: prometheus-client
    keeps every process's values in files of one folder (vaporform/metrics.py). Set before a
    process imports prometheus-client; last run's files are removed, their counts are gone."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    folder = Path(given) if given else config.data_dir / "prometheus"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    return folder


def run_api(config: Config, workers: int = 1) -> None:
    """Serve the API until SIGINT/SIGTERM with the server `VAPORFORM_SERVER` names
    (web/serving.py), in `workers` processes sharing the port."""
    if workers > 1:
        multiprocess_metrics(config)  # before anything imports prometheus-client
    from web.serving import serve_granian, serve_uvicorn, server_name

    name = server_name()
    if workers > 1 and not config.redis_url:
        raise StartupError("--workers above 1 needs REDIS_URL: the processes share its fan-out")
    if name == "granian":
        serve_granian(config, workers)
    elif name == "uvicorn":
        serve_uvicorn(config, workers)
    else:
        if workers != 1:
            raise StartupError("VAPORFORM_SERVER=hypercorn serves one process: use uvicorn")
        asyncio.run(_run_hypercorn(config))


async def _run_hypercorn(config: Config) -> None:
    from hypercorn.asyncio import serve

    from web import gc_pauses
    from web.app import create_app
    from web.serving import guarded, hypercorn_config

    app = guarded(create_app(config))
    gc_pauses.tune()
    hconfig = hypercorn_config(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(app, hconfig, shutdown_trigger=stop.wait)


async def run_previews(config: Config) -> int:
    """The preview origin alone: no Docker access, like the API (docs/containers.md)."""
    from web.preview_origin import serve_previews

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve_previews(config, stop)
    return 0
