"""Admin routes and the `vaporform admin` CLI against the real server, PostgreSQL and Redis:
who may see them (admins; 404 for everyone else), users (search, role, disable, MFA required),
per-user quotas and where they hold, and the first admin made by the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pyotp
import pytest

from store import ai_budget
from store.ai_budget import Budgets
from tests.collab.conftest import WSClient
from tests.conftest import Server, api_client, fresh_database, serving
from tests.support import Account, assert_error, create_project, register, unique_email, wait_until
from tests.web.admin_support import actions, make_admin, rows, tar_gz
from vaporform.config import Config

ADMIN = "/api/v1/admin"
REVOKED = 4003
EVENTS_ONLY_S = 60.0  # a re-check interval no test outlasts: only the announcement can act


@pytest.fixture(scope="module")
async def events_only(config: Config, worker: None) -> AsyncIterator[Server]:
    """A node that learns of account changes only from announcements."""
    # A small pool: PostgreSQL's connections are shared by every server of the session.
    small = replace(config, access_recheck_s=EVENTS_ONLY_S, db_pool_max=4)
    async with serving(small) as found:
        yield found


@pytest.fixture(scope="module")
async def fresh(config: Config, run_id: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server on a database of its own, empty of users: there is no admin yet."""
    data_dir = tmp_path_factory.mktemp("fresh")
    async with fresh_database(f"vaporform_test_{run_id}_admin") as url:
        bound = replace(
            config,
            database_url=url,
            data_dir=data_dir,
            redis_prefix=config.redis_prefix + "fresh:",
            db_pool_max=4,
        )
        async with serving(bound) as server:
            yield server, bound


async def test_non_admins_get_404_on_every_admin_route(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    user = await register(http, "plain")
    someone = await register(http, "someone")
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", f"{ADMIN}/users", None),
        ("GET", f"{ADMIN}/users/{someone.id}", None),
        ("GET", f"{ADMIN}/users/{uuid.uuid4()}", None),
        ("PATCH", f"{ADMIN}/users/{someone.id}", {"disabled": True}),
        ("PATCH", f"{ADMIN}/users/{user.id}", {"role": "admin"}),
        ("GET", f"{ADMIN}/users/{someone.id}/quotas", None),
        ("PUT", f"{ADMIN}/users/{user.id}/quotas", {"ai_budget_usd": 1000.0}),
        ("GET", f"{ADMIN}/audit", None),
        ("GET", f"{ADMIN}/nothing-here", None),
    ]
    answers = []
    for method, url, body in calls:
        answer = await http.request(method, url, json=body, headers=user.headers)
        assert_error(answer, 404, "not_found")
        answers.append(answer.json())
        if not url.endswith("nothing-here"):
            # Without a token: 401, as everywhere.
            assert_error(await http.request(method, url, json=body), 401, "unauthorized")
    # A real user and a made-up one get the same answer: nothing to learn from it.
    assert answers[1] == answers[2]
    # Nothing was changed, and every refusal was recorded.
    assert (await http.get("/api/v1/auth/me", headers=someone.headers)).status_code == 200
    assert (await http.get("/api/v1/auth/me", headers=user.headers)).json()["role"] == "user"
    denied = await rows(pool, actor=user.id, action="admin.denied")
    assert len(denied) == len(calls) - 1  # the unknown path never reaches the admin check
    assert {r["outcome"] for r in denied} == {"denied"}
    assert denied[3]["details"] == {"method": "PATCH", "path": f"{ADMIN}/users/{someone.id}"}


async def test_admins_search_and_page_users(http: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    admin = await make_admin(http, pool)
    tag = uuid.uuid4().hex[:8]
    made = [await register(http, f"find{tag}") for _ in range(3)]
    disabled = await http.patch(
        f"{ADMIN}/users/{made[0].id}", json={"disabled": True}, headers=admin.headers
    )
    assert disabled.status_code == 200, disabled.text

    async def listed(**params: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = {**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
            answer = await http.get(f"{ADMIN}/users", params=query, headers=admin.headers)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert len(body["items"]) <= 2
            found.extend(body["items"])
            cursor = body.get("next_cursor")
            if cursor is None:
                return found

    # By email or name, in any case; newest first.
    by_email = await listed(q=f"FIND{tag}".upper())
    assert [u["id"] for u in by_email] == [a.id for a in reversed(made)]
    assert set(by_email[0]) == {
        "id",
        "email",
        "name",
        "role",
        "created_at",
        "disabled",
        "disabled_at",
        "mfa_required",
        "mfa_enabled",
    }
    assert {u["id"] for u in await listed(q=f"Find{tag}", disabled="true")} == {made[0].id}
    assert {u["id"] for u in await listed(q=f"find{tag}", disabled="false")} == {
        made[1].id,
        made[2].id,
    }
    admins = await listed(role="admin")
    assert admin.id in {u["id"] for u in admins}
    assert {u["role"] for u in admins} == {"admin"}
    # LIKE's wildcards are matched as themselves.
    assert await listed(q=f"%{tag}") == []

    one = await http.get(f"{ADMIN}/users/{made[0].id}", headers=admin.headers)
    assert one.status_code == 200, one.text
    assert one.json()["disabled"] is True
    assert one.json()["email"] == made[0].email
    assert_error(await http.get(f"{ADMIN}/users/{uuid.uuid4()}", headers=admin.headers), 404)
    assert_error(await http.get(f"{ADMIN}/users/not-a-uuid", headers=admin.headers), 404)
    for params in ({"role": "root"}, {"disabled": "maybe"}, {"limit": "x"}, {"cursor": "@@"}):
        assert_error(await http.get(f"{ADMIN}/users", params=params, headers=admin.headers), 400)


async def test_a_role_change_holds_at_once(http: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    admin = await make_admin(http, pool)
    user = await register(http, "promoted")
    assert_error(await http.get(f"{ADMIN}/users", headers=user.headers), 404)
    promoted = await http.patch(
        f"{ADMIN}/users/{user.id}", json={"role": "admin"}, headers=admin.headers
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["role"] == "admin"
    # The same token: the role is read from PostgreSQL, not from the token.
    assert (await http.get(f"{ADMIN}/users", headers=user.headers)).status_code == 200
    demoted = await http.patch(
        f"{ADMIN}/users/{user.id}", json={"role": "user"}, headers=admin.headers
    )
    assert demoted.status_code == 200, demoted.text
    assert_error(await http.get(f"{ADMIN}/users", headers=user.headers), 404)
    found = await rows(pool, target=user.id, action="admin.role_set")
    assert [(r["actor_id"], r["details"]["to"]) for r in found] == [
        (uuid.UUID(admin.id), "admin"),
        (uuid.UUID(admin.id), "user"),
    ]
    assert found[0]["details"] == {"email": user.email, "from": "user", "to": "admin"}
    for body in ({"role": "root"}, {"disabled": "yes"}, {"unknown": 1}):
        assert_error(
            await http.patch(f"{ADMIN}/users/{user.id}", json=body, headers=admin.headers), 400
        )


async def _login(http: httpx.AsyncClient, account: Account) -> httpx.Response:
    return await http.post(
        "/api/v1/auth/login", json={"email": account.email, "password": account.password}
    )


async def test_disabling_a_user_ends_their_sessions_at_once(
    events_only: Server, pool: asyncpg.Pool
) -> None:
    async with api_client(events_only) as http:
        admin = await make_admin(http, pool)
        user = await register(http, "disabled")
        pid = (await create_project(http, user))["id"]
        put = await http.put(
            f"/api/v1/projects/{pid}/files/a.txt", json={"content": "a"}, headers=user.headers
        )
        assert put.status_code == 201, put.text
        ws = await WSClient.connect(events_only, pid, user.access_token)
        await ws.join("a.txt")

        started = time.monotonic()
        patched = await http.patch(
            f"{ADMIN}/users/{user.id}", json={"disabled": True}, headers=admin.headers
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["disabled"] is True

        async def closed() -> bool:
            return ws.closed is not None

        # This node re-checks only every minute: the admin route's announcement closes it.
        await wait_until(closed, timeout=2.0, what="the socket to close")
        assert time.monotonic() - started < 2.0
        assert ws.closed is not None
        assert ws.closed.rcvd is not None
        assert (ws.closed.rcvd.code, ws.closed.rcvd.reason) == (
            REVOKED,
            "the account is disabled or deleted",
        )
        assert_error(await http.get("/api/v1/projects", headers=user.headers), 401, "unauthorized")
        assert_error(await _login(http, user), 401, "account_disabled")
        refresh = await http.post(
            "/api/v1/auth/refresh", json={"refresh_token": user.refresh_token}
        )
        assert refresh.status_code == 401, refresh.text

        enabled = await http.patch(
            f"{ADMIN}/users/{user.id}", json={"disabled": False}, headers=admin.headers
        )
        assert enabled.status_code == 200, enabled.text
        assert enabled.json()["disabled"] is False
        assert (await _login(http, user)).status_code == 200
        # Enabling does not revive the refresh tokens disabling revoked.
        again = await http.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
        assert again.status_code == 401, again.text

    assert await actions(pool, target=user.id, action="admin.user_disabled") == [
        ("admin.user_disabled", "success")
    ]
    assert await actions(pool, target=user.id, action="admin.user_enabled") == [
        ("admin.user_enabled", "success")
    ]


async def test_mfa_can_be_required_of_one_user(http: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    admin = await make_admin(http, pool)
    user = await register(http, "mfa-required")
    bystander = await register(http, "bystander")
    required = await http.patch(
        f"{ADMIN}/users/{user.id}", json={"mfa_required": True}, headers=admin.headers
    )
    assert required.status_code == 200, required.text
    assert required.json()["mfa_required"] is True
    assert_error(
        await http.get("/api/v1/projects", headers=user.headers), 403, "mfa_enrolment_required"
    )
    assert (await http.get("/api/v1/projects", headers=bystander.headers)).status_code == 200
    status = await http.get("/api/v1/auth/mfa", headers=user.headers)
    assert status.json()["required"] is True
    assert (await http.get("/api/v1/auth/mfa", headers=bystander.headers)).json()[
        "required"
    ] is False

    # Enrolling is allowed, and lifts the restriction at once for the same token.
    enrolled = await http.post("/api/v1/auth/mfa/enrol", headers=user.headers)
    assert enrolled.status_code == 200, enrolled.text
    code = pyotp.TOTP(enrolled.json()["secret"]).now()
    confirmed = await http.post(
        "/api/v1/auth/mfa/confirm", json={"code": code}, headers=user.headers
    )
    assert confirmed.status_code == 200, confirmed.text
    assert (await http.get("/api/v1/projects", headers=user.headers)).status_code == 200
    shown = await http.get(f"{ADMIN}/users/{user.id}", headers=admin.headers)
    assert (shown.json()["mfa_required"], shown.json()["mfa_enabled"]) == (True, True)

    lifted = await http.patch(
        f"{ADMIN}/users/{user.id}", json={"mfa_required": False}, headers=admin.headers
    )
    assert lifted.status_code == 200, lifted.text
    assert (await http.get("/api/v1/auth/mfa", headers=user.headers)).json()["required"] is False
    found = await rows(pool, target=user.id, action="admin.mfa_required_set")
    assert [(r["actor_id"], r["details"]["to"]) for r in found] == [
        (uuid.UUID(admin.id), True),
        (uuid.UUID(admin.id), False),
    ]


async def _put_quotas(
    http: httpx.AsyncClient, admin: Account, user: Account, **limits: Any
) -> dict[str, Any]:
    answer = await http.put(f"{ADMIN}/users/{user.id}/quotas", json=limits, headers=admin.headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_quotas_are_stored_shown_and_audited(
    http: httpx.AsyncClient, pool: asyncpg.Pool, config: Config
) -> None:
    admin = await make_admin(http, pool)
    user = await register(http, "quota")
    shown = await http.get(f"{ADMIN}/users/{user.id}/quotas", headers=admin.headers)
    assert shown.status_code == 200, shown.text
    assert shown.json() == {
        "user_id": user.id,
        "quotas": {"containers_running": None, "storage_bytes": None, "ai_budget_usd": None},
        "effective": {
            "containers_running": None,
            "storage_bytes": None,
            "ai_budget_usd": config.ai.budget_user_usd,
        },
        "usage": {"containers_running": 0, "storage_bytes": 0, "ai_spent_usd": 0.0},
        "updated_at": None,
    }
    body = await _put_quotas(
        http, admin, user, containers_running=2, storage_bytes=1000, ai_budget_usd=1.5
    )
    limits = {"containers_running": 2, "storage_bytes": 1000, "ai_budget_usd": 1.5}
    assert body["quotas"] == limits
    assert body["effective"] == limits
    assert body["updated_at"]
    again = await http.get(f"{ADMIN}/users/{user.id}/quotas", headers=admin.headers)
    assert again.json()["quotas"] == limits
    # PUT replaces: what is left out goes back to the default.
    assert (await _put_quotas(http, admin, user, storage_bytes=5))["quotas"] == {
        "containers_running": None,
        "storage_bytes": 5,
        "ai_budget_usd": None,
    }
    for bad in (
        {"storage_bytes": -1},
        {"containers_running": "2"},
        {"ai_budget_usd": 2_000_000},
        {"cpus": 1},
    ):
        assert_error(
            await http.put(f"{ADMIN}/users/{user.id}/quotas", json=bad, headers=admin.headers), 400
        )
    assert_error(
        await http.put(f"{ADMIN}/users/{uuid.uuid4()}/quotas", json={}, headers=admin.headers),
        404,
    )
    found = await rows(pool, target=user.id, action="admin.quotas_set")
    assert len(found) == 2
    assert found[0]["details"]["from"] == {
        "containers_running": None,
        "storage_bytes": None,
        "ai_budget_usd": None,
    }
    assert found[1]["details"]["to"]["storage_bytes"] == 5


async def test_the_storage_quota_holds_across_the_owners_projects(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    admin = await make_admin(http, pool)
    owner = await register(http, "storage")
    first = (await create_project(http, owner))["id"]
    second = (await create_project(http, owner))["id"]
    await _put_quotas(http, admin, owner, storage_bytes=10)

    async def put(pid: str, path: str, content: str) -> httpx.Response:
        return await http.put(
            f"/api/v1/projects/{pid}/files/{path}", json={"content": content}, headers=owner.headers
        )

    assert (await put(first, "a.txt", "123456")).status_code == 201
    refused = await put(second, "b.txt", "12345")
    error = assert_error(refused, 400, "quota_exceeded")
    assert error["details"] == {"limit": "storage_bytes", "requested": 11, "maximum": 10}
    assert (await put(second, "b.txt", "1234")).status_code == 201  # exactly 10
    # Nothing of the refused write was kept: no file, no version, no audit row.
    listing = await http.get(f"/api/v1/projects/{second}/files", headers=owner.headers)
    assert [(f["path"], f["version"]) for f in listing.json()["items"]] == [("b.txt", 1)]
    written = await rows(pool, project=second, action="file.written")
    assert [r["details"]["files"] for r in written] == [[{"path": "b.txt", "version": 1}]]

    # An archive that would go over is refused whole.
    import_answer = await http.post(
        f"/api/v1/projects/{first}/archive",
        content=tar_gz({"c.txt": b"c"}),
        headers={**owner.headers, "Content-Type": "application/gzip"},
    )
    assert_error(import_answer, 400, "quota_exceeded")
    # Above a lowered quota the owner can still shrink what they hold, not grow it.
    await _put_quotas(http, admin, owner, storage_bytes=4)
    assert (await put(first, "a.txt", "12")).status_code == 200
    assert_error(await put(first, "a.txt", "123"), 400, "quota_exceeded")
    deleted = await http.delete(f"/api/v1/projects/{first}/files/a.txt", headers=owner.headers)
    assert deleted.status_code == 204
    assert (await put(first, "z.txt", "")).status_code == 201

    # A member's writes count against the owner, whose projects they are.
    member = await register(http, "member")
    added = await http.post(
        f"/api/v1/projects/{first}/members",
        json={"email": member.email, "role": "editor"},
        headers=owner.headers,
    )
    assert added.status_code == 201
    by_member = await http.put(
        f"/api/v1/projects/{first}/files/m.txt", json={"content": "m"}, headers=member.headers
    )
    assert_error(by_member, 400, "quota_exceeded")
    usage = await http.get(f"{ADMIN}/users/{owner.id}/quotas", headers=admin.headers)
    assert usage.json()["usage"]["storage_bytes"] == 4


async def test_the_ai_budget_of_a_user_replaces_the_default(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    admin = await make_admin(http, pool)
    user = await register(http, "ai-budget")
    pid = (await create_project(http, user))["id"]
    put = await http.put(
        f"/api/v1/projects/{pid}/files/a.py", json={"content": "a = 1\n"}, headers=user.headers
    )
    assert put.status_code == 201, put.text
    await _put_quotas(http, admin, user, ai_budget_usd=0)
    refused = await http.post(f"/api/v1/projects/{pid}/ai/reviews", json={}, headers=user.headers)
    error = assert_error(refused, 402, "budget_exceeded")
    assert error["details"]["scope"] == "user"
    assert error["details"]["budget_usd"] == 0

    # The worker's exact check reads the same quota: a reservation beyond it is refused.
    await _put_quotas(http, admin, user, ai_budget_usd=0.5)
    async with pool.acquire() as conn:
        refusal = await ai_budget.reserve(
            conn,
            call_key=f"test-{uuid.uuid4()}",
            job_id=None,
            project_id=uuid.UUID(pid),
            user_id=uuid.UUID(user.id),
            amount_usd=0.75,
            budgets=Budgets(project_usd=50.0, user_usd=20.0),
            ttl_s=60,
        )
    assert refusal is not None
    assert (refusal.scope, refusal.budget_usd) == ("user", 0.5)

    # Raised above the default, it allows what the default would not.
    await _put_quotas(http, admin, user, ai_budget_usd=100.0)
    started = await http.post(f"/api/v1/projects/{pid}/ai/reviews", json={}, headers=user.headers)
    assert started.status_code == 202, started.text


async def test_a_containers_running_quota_refuses_before_starting(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    admin = await make_admin(http, pool)
    user = await register(http, "containers")
    pid = (await create_project(http, user))["id"]
    await _put_quotas(http, admin, user, containers_running=0)
    refused = await http.post(f"/api/v1/projects/{pid}/container", json={}, headers=user.headers)
    error = assert_error(refused, 400, "quota_exceeded")
    assert error["details"] == {"limit": "containers_running", "requested": 1, "maximum": 0}
    status = await http.get(f"/api/v1/projects/{pid}/container", headers=user.headers)
    assert status.json()["status"] == "stopped"


async def _cli(config: Config, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """`vaporform admin ...` in a process of its own, on `config`'s database and Redis."""
    env = {
        **os.environ,
        "DATABASE_URL": config.database_url,
        "REDIS_URL": config.redis_url or "",
        "VAPORFORM_REDIS_PREFIX": config.redis_prefix,
        "VAPORFORM_DATA_DIR": str(config.data_dir),
        "VAPORFORM_JWT_SECRET": config.jwt.secret,
        "VAPORFORM_ARGON2_TIME_COST": str(config.argon2_time_cost),
        "VAPORFORM_ARGON2_MEMORY_KIB": str(config.argon2_memory_kib),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vaporform.cli",
        "admin",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_cli_creates_the_first_admin(fresh: tuple[Server, Config]) -> None:
    server, config = fresh
    email, password = unique_email("root"), "a long first password"
    code, out, err = await _cli(
        config,
        "create-user",
        "--email",
        email,
        "--name",
        "Root",
        "--password-stdin",
        "--admin",
        stdin=password + "\n",
    )
    assert code == 0, err
    created = json.loads(out)
    assert (created["email"], created["name"], created["role"]) == (email, "Root", "admin")
    code, _, err = await _cli(
        config,
        "create-user",
        "--email",
        email,
        "--name",
        "Again",
        "--password-stdin",
        stdin="x" * 9,
    )
    assert (code, "exists already" in err) == (1, True)
    code, _, err = await _cli(
        config,
        "create-user",
        "--email",
        unique_email(),
        "--name",
        "N",
        "--password-stdin",
        stdin="short",
    )
    assert (code, "password" in err) == (1, True)

    async with api_client(server) as http:
        login = await http.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        listed = await http.get(f"{ADMIN}/users", headers=headers)
        assert listed.status_code == 200, listed.text
        assert [u["email"] for u in listed.json()["items"]] == [email]
        audit = await http.get(f"{ADMIN}/audit", params={"action": "admin.*"}, headers=headers)
        [event] = audit.json()["items"]
        assert (event["action"], event["actor_id"], event["target"]) == (
            "admin.user_created",
            None,
            created["id"],
        )
        assert event["details"] == {"via": "cli", "email": email, "role": "admin"}

        # The only enabled admin cannot be disabled or demoted, by the API or the CLI.
        assert_error(
            await http.patch(
                f"{ADMIN}/users/{created['id']}", json={"disabled": True}, headers=headers
            ),
            409,
            "last_admin",
        )
        code, _, err = await _cli(config, "set-role", "--email", email, "--role", "user")
        assert (code, "only enabled admin" in err) == (1, True)

        # The CLI disables too, and the user's tokens stop working on the API.
        user = await register(http, "cli-disabled")
        code, out, err = await _cli(config, "disable", "--email", user.email)
        assert code == 0, err
        assert json.loads(out)["disabled"] is True

        async def refused() -> bool:
            answer = await http.get("/api/v1/projects", headers=user.headers)
            return answer.status_code == 401

        await wait_until(refused, timeout=5, what="the disabled user's token to be refused")
        code, out, err = await _cli(config, "enable", "--email", user.email)
        assert code == 0, err
        assert (await _login(http, user)).status_code == 200
        code, out, err = await _cli(config, "set-role", "--email", user.email, "--role", "admin")
        assert code == 0, err
        assert json.loads(out)["role"] == "admin"
        # Now there is another admin, the first may step down.
        demoted = await http.patch(
            f"{ADMIN}/users/{created['id']}", json={"role": "user"}, headers=headers
        )
        assert demoted.status_code == 200, demoted.text
        unknown = await _cli(config, "disable", "--email", unique_email())
        assert unknown[0] == 1
