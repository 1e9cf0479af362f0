"""`ContainerWorkflow` against fake Docker activities registered under the real activity names:
compensation, when a running container is kept or replaced, warm-pool fallback,
continue-as-new; and the container client that reaches it. The session's Temporal dev server,
no Docker engine: each test has a task queue of its own, on which one worker runs the workflow
and the fakes (the workflow's Docker queue is that same queue)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

from tests.support import wait_until
from vaporform.container_client import ContainerClient, ContainerHost, InvalidImage
from worker import WORKFLOW_RUNNER, sandboxed_worker
from workflows.containers.contract import (
    AdoptInput,
    ContainerInfo,
    ContainerRef,
    ContainerSpec,
    ContainerStatus,
    ContainerWorkflowInput,
    CreateContainerInput,
    CreateContainerOutput,
    DiscardMemberInput,
    EnsureRunningInput,
    ImageInfo,
    ImageRef,
    PoolClaimInput,
    PoolClaimOutput,
    PoolMember,
    RemovedOutput,
    Resources,
    StopContainerInput,
    TouchInput,
    WaitHealthyInput,
    WorkspaceInput,
    WorkspaceOutput,
)
from workflows.containers.entity import ContainerWorkflow
from workflows.containers.names import NOT_HEALTHY, container_workflow_id, pool_workflow_id

IMAGE = "vaporform/runtime-fake:latest"
CUSTOM = ContainerSpec(
    image=IMAGE, resources=Resources(0.5, 64, 64), ports=[3000], network="bridge"
)


@dataclass
class FakeDocker:
    """A Docker host that only remembers: the calls made, in order, and what runs."""

    unhealthy: bool = False  # docker_wait_healthy fails for good
    member: PoolMember | None = None  # what containers_pool_claim hands out
    adoption_fails: bool = False
    calls: list[tuple[str, str]] = field(default_factory=list)
    running: set[str] = field(default_factory=set)
    made: int = 0

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name="docker_ensure_image")
        async def ensure_image(data: ImageRef) -> ImageInfo:
            self.calls.append(("docker_ensure_image", data.image))
            return ImageInfo(data.image, "sha256:fake")

        @activity.defn(name="docker_prepare_workspace")
        async def prepare_workspace(data: WorkspaceInput) -> WorkspaceOutput:
            self.calls.append(("docker_prepare_workspace", data.project_id))
            return WorkspaceOutput(f"/workspaces/{data.project_id}")

        @activity.defn(name="docker_create_container")
        async def create_container(data: CreateContainerInput) -> CreateContainerOutput:
            self.made += 1
            container_id = f"c{self.made}"
            self.calls.append(("docker_create_container", container_id))
            return CreateContainerOutput(container_id)

        @activity.defn(name="docker_start_container")
        async def start_container(data: ContainerRef) -> ContainerInfo:
            self.calls.append(("docker_start_container", data.container_id))
            self.running.add(data.container_id)
            return ContainerInfo(data.container_id, exists=True, status="running")

        @activity.defn(name="docker_wait_healthy")
        async def wait_healthy(data: WaitHealthyInput) -> ContainerInfo:
            self.calls.append(("docker_wait_healthy", data.container_id))
            if self.unhealthy:
                raise ApplicationError(
                    "the container was not healthy within 5 s", type=NOT_HEALTHY, non_retryable=True
                )
            return ContainerInfo(
                data.container_id, exists=True, status="running", ports={"3000": 49153}
            )

        @activity.defn(name="docker_stop_container")
        async def stop_container(data: StopContainerInput) -> ContainerInfo:
            self.calls.append(("docker_stop_container", data.container_id))
            self.running.discard(data.container_id)
            return ContainerInfo(data.container_id, exists=True, status="exited")

        @activity.defn(name="docker_remove_container")
        async def remove_container(data: ContainerRef) -> RemovedOutput:
            self.calls.append(("docker_remove_container", data.container_id))
            self.running.discard(data.container_id)
            return RemovedOutput(removed=True)

        @activity.defn(name="containers_pool_claim")
        async def pool_claim(data: PoolClaimInput) -> PoolClaimOutput:
            self.calls.append(("containers_pool_claim", data.pool_id))
            member, self.member = self.member, None
            return PoolClaimOutput(member)

        @activity.defn(name="docker_adopt_pooled")
        async def adopt_pooled(data: AdoptInput) -> ContainerInfo:
            self.calls.append(("docker_adopt_pooled", data.member.container_id))
            if self.adoption_fails:
                raise ApplicationError("the pooled container is gone", non_retryable=True)
            self.running.add(data.member.container_id)
            return ContainerInfo(data.member.container_id, exists=True, status="running")

        @activity.defn(name="docker_pool_discard_member")
        async def discard_member(data: DiscardMemberInput) -> RemovedOutput:
            self.calls.append(("docker_pool_discard_member", data.container_id or ""))
            return RemovedOutput(removed=True)

        return [
            ensure_image,
            prepare_workspace,
            create_container,
            start_container,
            wait_healthy,
            stop_container,
            remove_container,
            pool_claim,
            adopt_pooled,
            discard_member,
        ]


@dataclass
class Host:
    docker: FakeDocker
    queue: str
    client: Client

    def containers(self, *, pools_unknown: bool = False) -> ContainerClient:
        """The container client the API and the AI jobs use, pointed at the fake host: with no
        warm pool, or (`pools_unknown`, as in the AI jobs) trying the image's pool."""
        pools: dict[str, int] | None = None if pools_unknown else {}
        return ContainerClient(
            self.client, self.queue, ContainerHost(self.queue, health_timeout_s=5, pools=pools)
        )

    def handle(self, project_id: str) -> WorkflowHandle[ContainerWorkflow, ContainerStatus]:
        return self.client.get_workflow_handle_for(
            ContainerWorkflow.run, container_workflow_id(project_id)
        )


@pytest.fixture
async def host(temporal_client: Client) -> AsyncIterator[Host]:
    docker = FakeDocker()
    queue = f"container-fakes-{uuid.uuid4().hex[:12]}"
    async with sandboxed_worker(
        temporal_client,
        task_queue=queue,
        workflows=[ContainerWorkflow],
        activities=docker.activities(),
        workflow_runner=WORKFLOW_RUNNER,
    ):
        yield Host(docker, queue, temporal_client)


def project() -> str:
    return str(uuid.uuid4())


async def test_a_failed_health_check_removes_what_was_created(host: Host) -> None:
    host.docker.unhealthy = True
    pid = project()
    status = await host.containers().ensure(pid, "tester", ContainerSpec(IMAGE))
    assert status.status == "failed"
    assert status.error == "the container was not healthy within 5 s"
    assert status.container_id is None
    assert status.ports == {}
    assert host.docker.names() == [
        "docker_ensure_image",
        "docker_prepare_workspace",
        "docker_create_container",
        "docker_start_container",
        "docker_wait_healthy",
        "docker_remove_container",
    ]
    assert host.docker.calls[-1] == ("docker_remove_container", "c1")
    # Nothing runs, so the workflow completes with the failure; the next start is a new run.
    final = await host.handle(pid).result()
    assert final.status == "failed"
    host.docker.unhealthy = False
    again = await host.containers().ensure(pid, "tester", ContainerSpec(IMAGE))
    assert again.status == "running"
    assert again.error is None
    assert again.container_id == "c2"


async def test_the_same_spec_keeps_the_container_and_another_replaces_it(host: Host) -> None:
    pid = project()
    containers = host.containers()
    first = await containers.ensure(pid, "tester", ContainerSpec(IMAGE))
    assert (first.status, first.container_id) == ("running", "c1")
    assert first.idle_deadline is not None

    same = await containers.ensure(pid, "tester", ContainerSpec(IMAGE))
    assert same.container_id == "c1"
    assert same.idle_deadline is not None
    assert same.idle_deadline >= first.idle_deadline
    assert host.docker.names().count("docker_create_container") == 1

    other = await containers.ensure(pid, "tester", CUSTOM)
    assert other.status == "running"
    assert other.container_id == "c2"
    assert other.resources == CUSTOM.resources
    assert other.network == "bridge"
    assert host.docker.calls[5:8] == [
        ("docker_stop_container", "c1"),
        ("docker_remove_container", "c1"),
        ("docker_ensure_image", IMAGE),
    ]
    assert host.docker.running == {"c2"}
    await containers.stop(pid, "tester")


async def test_reuse_running_keeps_a_container_of_any_spec(host: Host) -> None:
    pid = project()
    containers = host.containers()
    custom = await containers.ensure(pid, "user", CUSTOM)
    assert custom.container_id == "c1"
    calls = len(host.docker.calls)

    # As the AI jobs ask: the default spec, but whatever runs will do.
    reused = await containers.ensure(pid, "ai", ContainerSpec(IMAGE), reuse_running=True)
    assert reused.container_id == "c1"
    assert reused.resources == CUSTOM.resources
    assert reused.ports == custom.ports
    assert reused.network == "bridge"
    assert len(host.docker.calls) == calls  # not a single Docker call
    assert (await containers.status(pid)).container_id == "c1"

    # With nothing running, it starts one as asked.
    assert (await containers.stop(pid, "user")).status == "stopped"
    await host.handle(pid).result()
    fresh = await containers.ensure(pid, "ai", ContainerSpec(IMAGE), reuse_running=True)
    assert fresh.status == "running"
    assert fresh.container_id == "c2"
    assert fresh.resources == Resources()
    await containers.stop(pid, "ai")


async def test_a_failed_adoption_discards_the_member_and_starts_cold(host: Host) -> None:
    host.docker.member = PoolMember("pooled-1", "slot-1")
    host.docker.adoption_fails = True
    pid = project()
    # Pools unknown (as in the AI jobs): the default spec names the image's pool.
    status = await host.containers(pools_unknown=True).ensure(pid, "tester", ContainerSpec(IMAGE))
    assert status.status == "running"
    assert status.container_id == "c1"
    assert host.docker.calls[:3] == [
        ("containers_pool_claim", pool_workflow_id(host.queue, IMAGE)),
        ("docker_adopt_pooled", "pooled-1"),
        ("docker_pool_discard_member", "pooled-1"),
    ]
    assert host.docker.names()[3:] == [
        "docker_ensure_image",
        "docker_prepare_workspace",
        "docker_create_container",
        "docker_start_container",
        "docker_wait_healthy",
    ]
    await host.containers().stop(pid, "tester")


async def test_a_claimed_member_is_adopted(host: Host) -> None:
    host.docker.member = PoolMember("pooled-1", "slot-1")
    pid = project()
    status = await host.containers(pools_unknown=True).ensure(pid, "tester", ContainerSpec(IMAGE))
    assert status.container_id == "pooled-1"
    assert host.docker.names() == ["containers_pool_claim", "docker_adopt_pooled"]
    await host.containers().stop(pid, "tester")


async def test_no_pool_is_asked_for_another_spec_or_an_unpooled_image(host: Host) -> None:
    host.docker.member = PoolMember("pooled-1", "slot-1")
    pid, other = project(), project()
    custom = await host.containers(pools_unknown=True).ensure(pid, "tester", CUSTOM)
    plain = await host.containers().ensure(other, "tester", ContainerSpec(IMAGE))
    assert {custom.container_id, plain.container_id} == {"c1", "c2"}
    assert "containers_pool_claim" not in host.docker.names()
    for found in (pid, other):
        await host.containers().stop(found, "tester")


async def test_continue_as_new_keeps_the_container(host: Host) -> None:
    pid = project()
    # A short history limit, so that touches alone roll the workflow over.
    started = await host.client.execute_update_with_start_workflow(
        ContainerWorkflow.ensure_running,
        EnsureRunningInput(ContainerSpec(IMAGE), "tester"),
        start_workflow_operation=WithStartWorkflowOperation(
            ContainerWorkflow.run,
            ContainerWorkflowInput(
                project_id=pid, user_id="tester", docker_queue=host.queue, max_history_events=40
            ),
            id=container_workflow_id(pid),
            task_queue=host.queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        ),
    )
    assert started.status == "running"
    handle = host.handle(pid)
    first_run = (await handle.describe()).run_id
    for _ in range(30):
        await handle.signal(ContainerWorkflow.touch, TouchInput("tester"))

    async def continued() -> bool:
        return (await handle.describe()).run_id != first_run

    await wait_until(continued, timeout=20, what="continue-as-new")
    containers = host.containers()
    after = await containers.status(pid)
    assert after.status == "running"
    assert after.container_id == started.container_id
    assert after.started_at == started.started_at
    assert host.docker.names().count("docker_create_container") == 1
    stopped = await containers.stop(pid, "tester")
    assert stopped.status == "stopped"
    assert host.docker.calls[-1] == ("docker_remove_container", started.container_id)
    final = await handle.result()
    assert final.status == "stopped"
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED


async def test_the_client_refuses_an_image_that_is_not_a_runtime(host: Host) -> None:
    with pytest.raises(InvalidImage):
        await host.containers().ensure(project(), "tester", ContainerSpec("alpine:latest"))
    assert host.docker.calls == []
