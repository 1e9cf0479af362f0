"""Blob store latency: the local disk against S3 (a SeaweedFS server started here).

    python bench/blob_bench.py [--n 300] [--sizes 4096,65536,1048576] [--encrypted]

Each sample is one call through the blob store port (store/blobs.py), one at a time (closed
loop, one client): `put` of new content (the local store fsyncs the file and its folder; S3
is a HEAD then a PUT) and `get` of stored content. Both stores run on this machine, so S3's
figures are its protocol and server cost, without any network between hosts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stats import percentile
from store.blob_keys import parse_keyring
from store.blobs import BlobStore, LocalBlobStore
from store.s3_blobs import S3BlobStore
from tests.seaweed import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, make_bucket, seaweed_s3


async def _timed(n: int, call: Callable[[int], Awaitable[None]]) -> list[float]:
    latencies: list[float] = []
    for i in range(n):
        started = time.perf_counter()
        await call(i)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def bench_store(name: str, store: BlobStore, n: int, size: int) -> list[str]:
    contents = [os.urandom(size) for _ in range(n)]
    digests: list[str] = []

    async def put(i: int) -> None:
        digests.append(await store.put(contents[i]))

    async def get(i: int) -> None:
        assert len(await store.get(digests[i])) == size

    await store.put(os.urandom(size))  # warm up connections and folders, untimed
    rows = []
    for op, call in (("put", put), ("get", get)):
        found = await _timed(n, call)
        rows.append(
            f"| {name} | {op} | {size:>8} | {n} | {percentile(found, 50):7.2f} ms "
            f"| {percentile(found, 95):7.2f} ms |"
        )
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--sizes", default="4096,65536,1048576")
    parser.add_argument("--encrypted", action="store_true", help="AES-256-GCM on both")
    args = parser.parse_args()
    keyring = (
        parse_keyring(base64.b64encode(os.urandom(32)).decode(), None) if args.encrypted else None
    )
    sizes = [int(s) for s in args.sizes.split(",")]
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="blob-bench-") as scratch:
        root = Path(scratch)
        with seaweed_s3(root / "seaweedfs") as endpoint:
            bucket = f"vf-bench-{uuid.uuid4().hex[:8]}"
            make_bucket(endpoint, bucket)
            local = LocalBlobStore(root / "blobs", keyring=keyring)
            s3 = S3BlobStore(
                bucket,
                endpoint=endpoint,
                region=REGION,
                access_key_id=ACCESS_KEY_ID,
                secret_access_key=SECRET_ACCESS_KEY,
                keyring=keyring,
            )
            rows = ["| store | op | bytes | n | p50 | p95 |", "|---|---|---|---|---|---|"]
            for size in sizes:
                rows += await bench_store("local", local, args.n, size)
                rows += await bench_store("s3 (SeaweedFS)", s3, args.n, size)
    print(
        f"blob store latency, one client, encrypted={args.encrypted}, "
        f"load average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}"
    )
    print("\n".join(rows))


if __name__ == "__main__":
    asyncio.run(main())
