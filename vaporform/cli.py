"""`vaporform dev | api | worker | migrate`: run the whole stack, or one part of it."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from vaporform import logs
from vaporform.admin import add_commands as admin_commands
from vaporform.admin import run as run_admin
from vaporform.commands.data import rekey_blobs, run_backup
from vaporform.commands.dev import run_dev
from vaporform.commands.serve import run_api, run_previews
from vaporform.commands.startup import StartupError, prepare_database
from vaporform.config import load_config
from vaporform.settings.env import ConfigError


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
