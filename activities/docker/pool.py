"""Docker activities of the warm pool: make a ready member, throw one away.

A member is a hardened container of the pool's spec, named `vaporform-pool-<slot_id>`, whose
`/workspace` is its own empty slot folder `<data_dir>/pool-slots/<slot_id>` (owned by the
container's user). Both calls are idempotent by that name, so a retry after a worker crash finds
the member it was making instead of making a second one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import docker
import docker.errors
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.docker.engine import DockerActivities, beating
from activities.docker.hardening import check_runtime_image
from activities.docker.naming import member_labels, member_name
from vaporform.images import RUNTIME_UID
from workflows.containers.contract import (
    ContainerInfo,
    ContainerRef,
    CreateMemberInput,
    DiscardMemberInput,
    RemovedOutput,
    WaitHealthyInput,
)
from workflows.containers.names import LABEL_SLOT, NAME_TAKEN


def slots_root(data_dir: Path) -> Path:
    return data_dir / "pool-slots"


def slot_dir(data_dir: Path, slot_id: str) -> Path:
    if not slot_id or "/" in slot_id or slot_id.startswith("."):
        raise ApplicationError(f"bad slot id {slot_id!r}", non_retryable=True)
    return slots_root(data_dir) / slot_id


class ContainerPoolActivities:
    def __init__(self, docker_activities: DockerActivities, data_dir: Path) -> None:
        self._engine = docker_activities
        self._docker: docker.DockerClient = docker_activities._docker
        self._calls = docker_activities._calls
        self._data_dir = data_dir.resolve()

    @activity.defn(name="docker_pool_create_member")
    def create_member(self, data: CreateMemberInput) -> ContainerInfo:
        """Create, start and wait until healthy; on failure nothing of it is left behind."""
        check_runtime_image(data.spec)
        slot = slot_dir(self._data_dir, data.slot_id)
        slot.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(slot, RUNTIME_UID, RUNTIME_UID)
        container = self._find_or_create(data, slot)
        try:
            beating(self._calls, container.start)
            return self._engine.wait_healthy(
                WaitHealthyInput(str(container.id), data.health_timeout_s)
            )
        except ApplicationError:
            self.discard_member(DiscardMemberInput(data.slot_id, str(container.id)))
            raise

    def _find_or_create(self, data: CreateMemberInput, slot: Path) -> Any:
        name = member_name(data.slot_id)
        labels = member_labels(data.pool_id, data.slot_id)
        created = self._engine.create_idle(data.spec, name, labels, str(slot))
        if created is not None:
            return created
        existing = self._docker.containers.get(name)  # a retry after a crash: take it over
        if existing.labels.get(LABEL_SLOT) != data.slot_id:
            raise ApplicationError(
                f"container name {name} is taken", type=NAME_TAKEN, non_retryable=True
            )
        return existing

    @activity.defn(name="docker_pool_discard_member")
    def discard_member(self, data: DiscardMemberInput) -> RemovedOutput:
        """Remove an unclaimed member and its slot folder; a claimed one's slot is a workspace
        by now (moved away), so only the container goes."""
        removed = False
        for ref in filter(None, (data.container_id, member_name(data.slot_id))):
            try:
                container = self._docker.containers.get(ref)
            except docker.errors.NotFound:
                continue
            removed = self._engine.remove_container(ContainerRef(str(container.id))).removed
            break
        slot = slot_dir(self._data_dir, data.slot_id)
        if slot.is_dir() and not slot.is_symlink():
            shutil.rmtree(slot, ignore_errors=True)
        return RemovedOutput(removed=removed)

    def all(self) -> list[Any]:
        return [self.create_member, self.discard_member]
