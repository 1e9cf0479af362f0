"""Latency of login, GET /api/v1/projects and POST /api/v1/projects under concurrent clients.

    python bench/api_bench.py [--clients 50] [--requests 2000] [--url http://127.0.0.1:8000]

Without --url it starts its own stack (bench/stack.py). Prints p50/p95/p99, throughput and the
API process's peak RSS where it can read it. Login is measured separately with the production
argon2 cost: it is bounded by the password hash by design.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import stack
from bench.stats import measure, percentile


async def bench(url: str, clients: int, total: int, logins: int) -> None:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        password = "correct horse battery staple"
        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        registered = await client.post(
            "/api/v1/auth/register", json={"email": email, "password": password, "name": "Bench"}
        )
        registered.raise_for_status()
        headers = {"Authorization": f"Bearer {registered.json()['access_token']}"}
        for i in range(20):  # a realistic listing, not an empty one
            await client.post("/api/v1/projects", json={"name": f"seed {i}"}, headers=headers)

        async def create(i: int) -> None:
            r = await client.post("/api/v1/projects", json={"name": f"p{i}"}, headers=headers)
            assert r.status_code == 201, r.text

        async def listing(i: int) -> None:
            r = await client.get("/api/v1/projects?limit=20", headers=headers)
            assert r.status_code == 200, r.text

        async def login(i: int) -> None:
            r = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
            assert r.status_code == 200, r.text

        warm = min(200, total)
        await measure("warm-up", clients, warm, listing)
        await measure("GET /api/v1/projects", clients, total, listing)
        await measure("POST /api/v1/projects", clients, total, create)
        await measure("POST /api/v1/auth/login", clients, logins, login)
        one = []
        for _ in range(20):
            started = time.perf_counter()
            await login(0)
            one.append((time.perf_counter() - started) * 1000)
        print(f"login, one client       p50={percentile(one, 50):7.2f} ms (argon2id cost alone)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--logins", type=int, default=200)
    parser.add_argument("--url")
    args = parser.parse_args()
    print(f"{args.clients} concurrent clients")
    if args.url:
        await bench(args.url, args.clients, args.requests, args.logins)
        return
    # Login limits are per address: the bench is one address making many logins.
    async with stack(
        {"VAPORFORM_LOGIN_PER_IP": "1000000", "VAPORFORM_LOGIN_PER_EMAIL": "1000000"}
    ) as url:
        await bench(url, args.clients, args.requests, args.logins)


if __name__ == "__main__":
    asyncio.run(main())
