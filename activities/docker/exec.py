"""`docker_exec`: a command in a project's container, as its user, with a deadline and a cap on
what it prints. A sync activity on the Docker host's queue, like the engine's."""

from __future__ import annotations

import select
import socket
import struct
import time
from typing import Any

import docker
import docker.errors
from temporalio import activity
from temporalio.exceptions import ApplicationError

from vaporform import metrics
from vaporform.images import RUNTIME_UID
from workflows.containers.contract import ExecInput, ExecOutput
from workflows.containers.names import CONTAINER_GONE


class ExecActivities:
    def __init__(self, client: docker.DockerClient) -> None:
        self._docker = client

    @activity.defn(name="docker_exec")
    def exec(self, data: ExecInput) -> ExecOutput:
        """Run a command as the container's user; capture output up to a cap; enforce a timeout.

        The command runs under `timeout -s KILL` inside the container (busybox and coreutils
        both have it), so a runaway process dies with its deadline; the read loop has its own
        deadline a little later in case the image lacks `timeout`.
        """
        api = self._docker.api
        started = time.perf_counter()
        seconds = max(1, round(data.timeout_s))
        command = ["timeout", "-s", "KILL", str(seconds), *data.command]
        try:
            exec_id = api.exec_create(
                data.container_id,
                command,
                user=f"{RUNTIME_UID}:{RUNTIME_UID}",
                workdir="/workspace",
            )["Id"]
        except docker.errors.NotFound:
            raise ApplicationError(
                "the container is gone", type=CONTAINER_GONE, non_retryable=True
            ) from None
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # not running
                raise ApplicationError(
                    "the container is not running", type=CONTAINER_GONE, non_retryable=True
                ) from None
            raise
        sock: Any = api.exec_start(exec_id, socket=True)
        raw: socket.socket = getattr(sock, "_sock", sock)
        try:
            streams, truncated = self._read_frames(raw, data, deadline=seconds + 5)
        finally:
            # The wrapper holds a reference on the socket: both must close to free it.
            sock.close()
            raw.close()
        duration_ms = int((time.perf_counter() - started) * 1000)
        exit_code = api.exec_inspect(exec_id).get("ExitCode")
        timed_out = exit_code in (None, 137) and duration_ms >= seconds * 1000
        metrics.EXEC_DURATION.labels("timed_out" if timed_out else "exited").observe(
            duration_ms / 1000
        )
        return ExecOutput(
            exit_code=-1 if exit_code is None else int(exit_code),
            stdout=streams[1].decode(errors="replace"),
            stderr=streams[2].decode(errors="replace"),
            duration_ms=duration_ms,
            truncated=truncated,
            timed_out=timed_out,
        )

    def _read_frames(
        self, raw: socket.socket, data: ExecInput, *, deadline: float
    ) -> tuple[dict[int, bytes], bool]:
        """Read Docker's multiplexed stream (8-byte header: stream, 0, 0, 0, size)."""
        limit = time.monotonic() + deadline
        buffer = b""
        streams = {1: b"", 2: b""}
        kept = 0
        truncated = False
        last_beat = 0.0
        try:
            while True:
                now = time.monotonic()
                if now > limit:
                    break
                if now - last_beat > 1:
                    activity.heartbeat()
                    last_beat = now
                ready, _, _ = select.select([raw], [], [], min(1.0, limit - now))
                if not ready:
                    continue
                chunk = raw.recv(65536)
                if not chunk:
                    break
                buffer += chunk
                while len(buffer) >= 8:
                    kind, size = struct.unpack(">BxxxL", buffer[:8])
                    if len(buffer) < 8 + size:
                        break
                    payload, buffer = buffer[8 : 8 + size], buffer[8 + size :]
                    room = data.output_cap_bytes - kept
                    if len(payload) > room:
                        truncated = True
                        payload = payload[: max(room, 0)]
                    kept += len(payload)
                    if kind in streams:
                        streams[kind] += payload
        except OSError:
            pass  # the engine closed the stream: what was read is the answer
        return streams, truncated

    def all(self) -> list[Any]:
        return [self.exec]
