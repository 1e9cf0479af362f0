"""`ContainerWorkflow`: one long-lived entity per project container (`container-<project_id>`).

It is the only thing that creates or removes a project's container, so concurrent requests
from several API nodes cannot race: its handlers are serialised by a lock. It provisions with
compensation (a step that fails undoes the steps before it), stops the container after an idle
deadline that `touch` pushes back, and continues as new before its history grows large. When
the container is stopped (or failed) and no handler runs, the workflow completes; the next
`ensure_running` (update-with-start) starts a fresh one.

The Docker steps (provisioning, teardown, replacing a vanished container) are in
`workflows/containers/steps.py`; they call the Docker activities by name, so no Docker code is
imported here. `ensure_running` keeps a running container when it runs the spec asked for, or
when the caller takes whatever runs (`reuse_running`, the AI jobs); otherwise it replaces it.

When `ensure_running` names a warm pool (`workflows/containers/pool.py`), provisioning first
claims a ready member and adopts it (rename, slot folder becomes the workspace); an empty pool
or a failed adoption falls back to the cold path (create, start, wait healthy).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.containers.contract import (
    ContainerState,
    ContainerStatus,
    ContainerWorkflowInput,
    EnsureRunningInput,
    StopInput,
    TouchInput,
    VanishedInput,
)
from workflows.containers.names import Status
from workflows.containers.steps import ContainerSteps


@workflow.defn(name="ContainerWorkflow")
class ContainerWorkflow:
    @workflow.init
    def __init__(self, data: ContainerWorkflowInput) -> None:
        self._input = data
        self._state = data.state or ContainerState()
        self._lock = asyncio.Lock()
        self._wake = False
        self._vanished: str | None = None
        self._steps = ContainerSteps(data, self._state, self._push_deadline)

    # --- main loop -------------------------------------------------------------------

    @workflow.run
    async def run(self, data: ContainerWorkflowInput) -> ContainerStatus:
        while True:
            await self._sleep_until_something_happens()
            if self._vanished is not None:
                async with self._lock:
                    await self._recover_vanished()
            if self._idle_expired() and not self._lock.locked():
                async with self._lock:
                    if self._idle_expired():
                        await self._steps.teardown()
                        workflow.logger.info("container stopped after the idle deadline")
            if self._finished():
                return self._status()
            if self._history_is_long():
                await workflow.wait_condition(
                    lambda: workflow.all_handlers_finished() and not self._lock.locked()
                )
                workflow.continue_as_new(replace(self._input, state=self._state))

    async def _sleep_until_something_happens(self) -> None:
        if self._finished() or self._history_is_long() or self._idle_expired():
            return
        timeout: float | None = None
        deadline = self._deadline()
        if self._state.status == Status.RUNNING and deadline is not None:
            timeout = max((deadline - workflow.now()).total_seconds(), 0.001)
        self._wake = False
        with contextlib.suppress(TimeoutError):  # the idle deadline passed
            await workflow.wait_condition(
                lambda: self._wake or self._finished(), timeout=timeout, timeout_summary="idle"
            )

    def _finished(self) -> bool:
        return (
            self._state.status in (Status.STOPPED, Status.FAILED)
            and self._vanished is None
            and not self._lock.locked()
            and workflow.all_handlers_finished()
        )

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return (
            info.get_current_history_length() > self._input.max_history_events
            or info.is_continue_as_new_suggested()
        )

    def _deadline(self) -> datetime | None:
        raw = self._state.idle_deadline
        return datetime.fromisoformat(raw) if raw else None

    def _idle_expired(self) -> bool:
        deadline = self._deadline()
        return (
            self._state.status == Status.RUNNING
            and deadline is not None
            and workflow.now() >= deadline
        )

    def _push_deadline(self) -> None:
        deadline = workflow.now() + timedelta(seconds=self._input.idle_timeout_s)
        self._state.idle_deadline = deadline.isoformat()
        self._wake = True  # the main loop re-arms its timer on the new deadline

    # --- handlers --------------------------------------------------------------------

    @workflow.update
    async def ensure_running(self, data: EnsureRunningInput) -> ContainerStatus:
        async with self._lock:
            if self._keep(data):
                self._push_deadline()
                return self._status()
            if self._state.container_id is not None:
                await self._steps.teardown()  # another spec was asked for: replace it
            self._state.pool_id = data.pool_id
            await self._steps.provision(data.spec, data.requested_by)
            self._wake = True
            return self._status()

    def _keep(self, data: EnsureRunningInput) -> bool:
        """Whether the running container answers `data` as it is."""
        state = self._state
        return state.status == Status.RUNNING and (data.reuse_running or state.spec == data.spec)

    @ensure_running.validator
    def _validate_ensure_running(self, data: EnsureRunningInput) -> None:
        if data.spec.network not in ("none", "bridge"):
            raise ValueError(f"unknown network {data.spec.network!r}")

    @workflow.update
    async def stop(self, data: StopInput) -> ContainerStatus:
        async with self._lock:
            if self._state.container_id is not None or self._state.status != Status.STOPPED:
                await self._steps.teardown()
            self._wake = True
            return self._status()

    @workflow.update
    async def restart(self, data: StopInput) -> ContainerStatus:
        async with self._lock:
            spec = self._state.spec
            if spec is None:
                raise ApplicationError("the container was never started", non_retryable=True)
            await self._steps.teardown()
            await self._steps.provision(spec, data.requested_by or self._state.started_by or "")
            self._wake = True
            return self._status()

    @workflow.signal
    def touch(self, data: TouchInput) -> None:
        if self._state.status == Status.RUNNING:
            self._push_deadline()

    @workflow.signal
    def container_vanished(self, data: VanishedInput) -> None:
        """From the reconciler: the engine no longer runs our container (e.g. it restarted)."""
        if self._state.status == Status.RUNNING and data.container_id == self._state.container_id:
            self._vanished = data.container_id
            self._wake = True

    @workflow.query
    def status(self) -> ContainerStatus:
        return self._status()

    def _status(self) -> ContainerStatus:
        spec = self._state.spec
        return ContainerStatus(
            project_id=self._input.project_id,
            workflow_id=workflow.info().workflow_id,
            status=self._state.status,
            container_id=self._state.container_id,
            image=spec.image if spec else None,
            ports=dict(self._state.ports),
            resources=spec.resources if spec else None,
            network=spec.network if spec else None,
            started_at=self._state.started_at,
            idle_deadline=self._state.idle_deadline,
            error=self._state.error,
            docker_queue=self._input.docker_queue,
            agent_url=self._input.agent_url,
        )

    async def _recover_vanished(self) -> None:
        vanished, self._vanished = self._vanished, None
        spec = self._state.spec
        if vanished is None or vanished != self._state.container_id or spec is None:
            return
        workflow.logger.warning("container %s vanished; provisioning again", vanished[:12])
        await self._steps.replace_vanished(vanished, spec)
