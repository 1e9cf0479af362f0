"""`vaporform dev`: the database, the Docker engine, a Temporal dev server, the worker, the API
and the preview origin on one machine, stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from vaporform.commands.startup import (
    StartupError,
    prepare_database,
    temporal_command,
    wait_for_http,
    wait_for_temporal,
)
from vaporform.config import Config

REDIS_NOTE = "REDIS_URL is not set: using in-process pub/sub, revocation and rate limits"


def _step(index: int, total: int, label: str) -> float:
    print(f"[{index}/{total}] {label} ...", end="", flush=True)
    return time.perf_counter()


def _done(started: float, note: str = "ok") -> None:
    print(f" {note} ({(time.perf_counter() - started) * 1000:.0f} ms)", flush=True)


def _spawn(args: list[str], log_path: Path | None = None) -> subprocess.Popen[bytes]:
    out = open(log_path, "ab") if log_path else None  # noqa: SIM115 - lives with the child
    return subprocess.Popen(
        args, stdout=out, stderr=subprocess.STDOUT if out else None, start_new_session=True
    )


def _stop_all(children: list[subprocess.Popen[bytes]]) -> None:
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in reversed(children):
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _prepare_containers(config: Config) -> str:
    """Docker engine and runtime image for `vaporform dev`; the note for its step line."""
    from vaporform.dev_setup import ensure_docker_engine, ensure_runtime_image

    def say(line: str) -> None:
        print(f"\n      {line}", end="", flush=True)

    client = ensure_docker_engine(config.data_dir / "logs", say)
    if client is None:
        return "no Docker engine: project containers are unavailable"
    try:
        runtime = ensure_runtime_image(client, config.containers.default_image, say)
    finally:
        client.close()
    if runtime.image is None:
        return "no runtime image: project containers will fail to start"
    if runtime.image != config.containers.default_image:
        # The worker and the API are started below with this environment.
        os.environ["VAPORFORM_CONTAINER_IMAGE"] = runtime.image
    return f"{runtime.image} ({runtime.note})"


async def run_dev(config: Config) -> int:
    total = 6
    config.data_dir.mkdir(parents=True, exist_ok=True)
    (config.data_dir / "logs").mkdir(exist_ok=True)
    children: list[subprocess.Popen[bytes]] = []
    try:
        started = _step(1, total, "PostgreSQL: database and migrations")
        applied = await prepare_database(config)
        _done(started, f"{len(applied)} migration(s) applied" if applied else "up to date")
        if not config.redis_url:
            print(f"      note: {REDIS_NOTE}")

        started = _step(2, total, "Docker engine and runtime image")
        _done(started, await asyncio.to_thread(_prepare_containers, config))

        started = _step(3, total, "Temporal dev server")
        ui_port = int(os.environ.get("VAPORFORM_TEMPORAL_UI_PORT", "8233"))
        children.append(
            _spawn(temporal_command(config, ui_port), config.data_dir / "logs" / "temporal.log")
        )
        await wait_for_temporal(config.temporal_address, 30)
        _done(started)

        me = [sys.executable, "-m", "vaporform.cli"]
        logs_dir = config.data_dir / "logs"
        started = _step(4, total, "worker")
        children.append(_spawn([*me, "worker"], logs_dir / "worker.log"))
        _done(started, "started")

        started = _step(5, total, "API")
        children.append(_spawn([*me, "api"], logs_dir / "api.log"))
        # The preview origin (web/preview_origin.py): its own process and listener.
        children.append(_spawn([*me, "previews"], logs_dir / "previews.log"))
        base = f"http://{config.api_host}:{config.api_port}"
        await wait_for_http(base + "/healthz", 30)
        _done(started)

        started = _step(6, total, "readiness")
        await wait_for_http(base + "/readyz", 30)
        _done(started)
        print(
            "\nVaporform is running:\n"
            f"  IDE           {base}/\n"
            f"  API           {base}/api/v1\n"
            f"  OpenAPI       {base}/openapi.json\n"
            f"  previews      {config.previews.url} (the agent: "
            f"{config.agent.default_url}, in the worker)\n"
            f"  Temporal UI   http://127.0.0.1:{ui_port}\n"
            f"  logs          {logs_dir}/{{api,worker,previews,temporal}}.log (JSON lines)\n"
            "Press Ctrl-C to stop everything.",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        while not stop.is_set():
            for child in children:
                if child.poll() is not None:
                    print(f"\na process exited ({child.args!r}): stopping", file=sys.stderr)
                    return 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        print("\nstopping ...", flush=True)
        return 0
    except StartupError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    finally:
        _stop_all(children)
