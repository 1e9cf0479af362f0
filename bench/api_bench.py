"""Latency of login, GET /api/v1/projects and POST /api/v1/projects under concurrent clients.

    python bench/api_bench.py [--clients 50] [--requests 2000] [--url http://127.0.0.1:8000]

Without --url it starts its own stack (bench/stack.py). Prints p50/p95/p99, throughput and the
API process's peak RSS where it can read it. Login is measured separately with the production
argon2 cost: it is bounded by the password hash by design.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadclient import ConnectionPool
from bench.stack import stack
from bench.stats import measure


async def bench(url: str, clients: int, total: int, logins: int) -> None:
    pool = ConnectionPool(url, clients)
    await pool.open()
    password = "correct horse battery staple"
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    status, body = await pool.request(
        "POST",
        "/api/v1/auth/register",
        json_body={"email": email, "password": password, "name": "Bench"},
    )
    assert status == 201, body
    headers = {"Authorization": f"Bearer {json.loads(body)['access_token']}"}
    for i in range(20):  # a realistic listing, not an empty one
        await pool.request("POST", "/api/v1/projects", json_body={"name": f"s{i}"}, headers=headers)

    # Projects are created by a second account, so the listing measured stays 20 long.
    status, body = await pool.request(
        "POST",
        "/api/v1/auth/register",
        json_body={"email": "creator-" + email, "password": password, "name": "Creator"},
    )
    assert status == 201, body
    creator = {"Authorization": f"Bearer {json.loads(body)['access_token']}"}

    async def create(i: int) -> None:
        status, body = await pool.request(
            "POST", "/api/v1/projects", json_body={"name": f"p{i}"}, headers=creator
        )
        assert status == 201, (status, body)

    async def listing(i: int) -> None:
        status, body = await pool.request("GET", "/api/v1/projects", headers=headers)
        assert status == 200, (status, body)

    async def login(i: int) -> None:
        status, body = await pool.request(
            "POST", "/api/v1/auth/login", json_body={"email": email, "password": password}
        )
        assert status == 200, (status, body)

    try:
        await measure("warm-up", clients, min(200, total), listing)
        await measure("GET /api/v1/projects", clients, total, listing)
        await measure("POST /api/v1/projects", clients, total, create)
        await measure("POST /api/v1/auth/login", clients, logins, login)
        await measure("GET /api/v1/projects, 1 client", 1, 300, listing)
        await measure("POST /api/v1/projects, 1 client", 1, 300, create)
        await measure("POST /api/v1/auth/login, 1 client", 1, 50, login)
    finally:
        pool.close()


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
