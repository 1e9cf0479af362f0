"""Dataclasses of the reconciler (`workflows/containers/reconcile.py`): what the Docker host
lists, what the bookkeeping activities decide and tell.

A module of the `contract` package, so the worker passes it through the sandbox with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ListContainersInput:
    project_id: str | None = None


@dataclass(frozen=True)
class ManagedContainer:
    container_id: str
    name: str
    project_id: str
    workflow_id: str
    status: str
    created_at: str = ""  # ISO 8601, from the engine
    pool_id: str = ""  # LABEL_POOL: a warm-pool member (claimed or not)


@dataclass(frozen=True)
class ListContainersOutput:
    items: list[ManagedContainer]


@dataclass(frozen=True)
class ReconcileInput:
    docker_queue: str
    # A labelled container younger than this is left alone: its workflow may not be visible yet.
    grace_s: float = 120.0


@dataclass(frozen=True)
class ReconcileOutput:
    removed: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ClassifyInput:
    docker_queue: str
    containers: list[ManagedContainer]
    grace_s: float


@dataclass(frozen=True)
class VanishedContainer:
    workflow_id: str
    container_id: str


@dataclass(frozen=True)
class ClassifyOutput:
    orphans: list[str] = field(default_factory=list)  # container ids to remove
    vanished: list[VanishedContainer] = field(default_factory=list)
    pools: list[PoolGone] = field(default_factory=list)


@dataclass(frozen=True)
class PoolGone:
    """Ready members of a pool that the engine no longer runs."""

    pool_id: str
    container_ids: list[str]


@dataclass(frozen=True)
class NotifyVanishedInput:
    items: list[VanishedContainer]
    pools: list[PoolGone] = field(default_factory=list)


@dataclass(frozen=True)
class NotifyOutput:
    notified: int
