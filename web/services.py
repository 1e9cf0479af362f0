"""The clients one API process holds, created at serving start and kept on the app."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from quart import current_app
from temporalio.client import Client as TemporalClient

from collab.hub import Hub
from files.service import FileSystem
from store.ephemeral import Ephemeral
from vaporform.config import Config
from vaporform.container_client import ContainerClient
from web.passwords import Passwords

EXTENSION_KEY = "vaporform"


@dataclass(slots=True)
class Services:
    config: Config
    pool: asyncpg.Pool
    ephemeral: Ephemeral
    temporal: TemporalClient
    passwords: Passwords
    files: FileSystem
    # Live collaboration of this node; commits go through a pool of its own (`collab.pool`).
    collab: Hub
    # The one way to a project's container (its workflow), shared with the AI jobs' activity.
    containers: ContainerClient


def services() -> Services:
    found: Services | None = current_app.extensions.get(EXTENSION_KEY)
    if found is None:
        raise RuntimeError("services are not started: serve the app or use app.test_app()")
    return found
