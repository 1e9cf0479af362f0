"""`ContainerPoolWorkflow`: a few started, healthy containers of one image, ready to be claimed.

One per Docker host and image (`pool_workflow_id`). Its members run the hardened settings of
the pool's spec with network `none`, each with its own empty slot folder
(`<data_dir>/pool-slots/<slot_id>`) bind-mounted at `/workspace`, because Docker cannot add a
bind mount to a running container. A project's `ContainerWorkflow` claims a member with the
`claim` update (through a local activity, `containers_pool_claim`), then adopts it on the Docker
host: the container is renamed `vaporform-<project_id>` and the slot folder becomes the
project's workspace. A claimed member leaves the pool for good and is never handed out again;
the claim is remembered under the claimer's request id so a replayed claim gets the same one.

The main loop refills the pool in the background (a failing refill backs off exponentially),
trims it when it is resized down, drops members the reconciler reports gone, completes when it
is resized to 0 and empty, and continues as new before its history grows large.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.containers.contract import (
    MAX_POOL_CLAIMS,
    ContainerInfo,
    CreateMemberInput,
    DiscardMemberInput,
    PoolClaim,
    PoolClaimInput,
    PoolClaimOutput,
    PoolInput,
    PoolMember,
    PoolMembersGoneInput,
    PoolResizeInput,
    PoolState,
    PoolStatus,
    RemovedOutput,
)
from workflows.containers.names import COMPENSATION_RETRY, DOCKER_RETRY
from workflows.containers.steps import failure_reason

MAX_BACKOFF_S = 300.0


@workflow.defn(name="ContainerPool")
class ContainerPoolWorkflow:
    @workflow.init
    def __init__(self, data: PoolInput) -> None:
        self._input = data
        self._state = data.state or PoolState(size=data.size)
        self._creating = 0
        self._gone: set[str] = set()
        self._wake = False

    @workflow.run
    async def run(self, data: PoolInput) -> PoolStatus:
        while True:
            await self._drop_gone()
            await self._trim()
            if self._state.size == 0 and not self._state.ready and not self._creating:
                await workflow.wait_condition(workflow.all_handlers_finished)
                return self.status()
            if self._history_is_long():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(replace(self._input, state=self._state))
            missing = self._state.size - len(self._state.ready)
            if missing > 0:
                # Members are made side by side; a claim meanwhile only widens the gap, which
                # the next round fills.
                results = await asyncio.gather(*(self._add_member() for _ in range(missing)))
                if all(results):
                    self._state.failures, self._state.last_error = 0, None
                    continue
                self._state.failures += 1
            await self._sleep()

    async def _sleep(self) -> None:
        timeout: float | None = None
        if self._state.failures:
            timeout = min(2.0**self._state.failures, MAX_BACKOFF_S)
        elif len(self._state.ready) < self._state.size:
            return
        self._wake = False
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._wake or self._history_is_long(),
                timeout=timeout,
                timeout_summary="pool refill back-off" if timeout else None,
            )

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return (
            info.get_current_history_length() > self._input.max_history_events
            or info.is_continue_as_new_suggested()
        )

    # --- members ---------------------------------------------------------------------

    async def _add_member(self) -> bool:
        slot_id = str(workflow.uuid4())
        self._creating += 1
        try:
            info = await workflow.execute_activity(
                "docker_pool_create_member",
                CreateMemberInput(
                    pool_id=workflow.info().workflow_id,
                    slot_id=slot_id,
                    spec=self._input.spec,
                    health_timeout_s=self._input.health_timeout_s,
                ),
                result_type=ContainerInfo,
                task_queue=self._input.docker_queue,
                start_to_close_timeout=timedelta(seconds=self._input.health_timeout_s + 30),
                heartbeat_timeout=timedelta(seconds=2),
                retry_policy=DOCKER_RETRY,
            )
        except ActivityError as err:
            self._state.last_error = failure_reason(err)
            workflow.logger.warning("pool refill failed: %s", self._state.last_error)
            await self._discard(DiscardMemberInput(slot_id=slot_id))
            return False
        finally:
            self._creating -= 1
        self._state.ready.append(
            PoolMember(info.container_id, slot_id, created_at=workflow.now().isoformat())
        )
        return True

    async def _discard(self, data: DiscardMemberInput) -> None:
        try:
            await workflow.execute_activity(
                "docker_pool_discard_member",
                data,
                result_type=RemovedOutput,
                task_queue=self._input.docker_queue,
                start_to_close_timeout=timedelta(seconds=30),
                heartbeat_timeout=timedelta(seconds=2),
                retry_policy=COMPENSATION_RETRY,
            )
        except ActivityError as err:
            # The reconciler removes pool-labelled containers their pool does not list.
            workflow.logger.warning("could not discard a pool member: %s", failure_reason(err))

    async def _trim(self) -> None:
        while len(self._state.ready) > self._state.size:
            member = self._state.ready.pop()  # the newest goes first
            await self._discard(DiscardMemberInput(member.slot_id, member.container_id))

    async def _drop_gone(self) -> None:
        if not self._gone:
            return
        gone, self._gone = self._gone, set()
        for member in [m for m in self._state.ready if m.container_id in gone]:
            self._state.ready.remove(member)
            await self._discard(DiscardMemberInput(member.slot_id, member.container_id))

    # --- handlers --------------------------------------------------------------------

    @workflow.update
    def claim(self, data: PoolClaimInput) -> PoolClaimOutput:
        """Hand one ready member to a project, for good; none when the pool is empty."""
        for earlier in self._state.claims:
            if earlier.request_id == data.request_id:
                return PoolClaimOutput(earlier.member)
        if data.spec != self._input.spec or not self._state.ready:
            return PoolClaimOutput(None)
        member = self._state.ready.pop(0)  # the oldest: it has proven to stay up longest
        self._state.claims.append(PoolClaim(data.request_id, data.project_id, member))
        del self._state.claims[:-MAX_POOL_CLAIMS]
        self._wake = True
        return PoolClaimOutput(member)

    @workflow.signal
    def resize(self, data: PoolResizeInput) -> None:
        self._state.size = max(0, data.size)
        self._state.failures = 0  # a new size (e.g. after an image was built) retries at once
        self._wake = True

    @workflow.signal
    def members_gone(self, data: PoolMembersGoneInput) -> None:
        """From the reconciler: ready members the engine no longer runs."""
        self._gone.update(data.container_ids)
        self._wake = True

    @workflow.query
    def status(self) -> PoolStatus:
        return PoolStatus(
            pool_id=workflow.info().workflow_id,
            image=self._input.spec.image,
            size=self._state.size,
            ready=list(self._state.ready),
            claims=list(self._state.claims),
            creating=self._creating,
            last_error=self._state.last_error,
        )
