"""The audit log end to end: each audited action leaves its row (actor, project, action, target,
request id, client address, time, outcome), the table refuses every change, admins page and
filter it, a project's owners read their project's part and nobody else does."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pyotp
import pytest

from collab import ot
from store import ai as ai_store
from tests.collab.conftest import WSClient
from tests.conftest import Server
from tests.support import Account, assert_error, create_project, register
from tests.web.admin_support import actions, make_admin, rows, tar_gz, wait_for_row

MFA = "/api/v1/auth/mfa"


def rid() -> str:
    return f"audit-{uuid.uuid4().hex[:12]}"


async def test_auth_events_carry_actor_address_and_request_id(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    account = await register(http, "auth")
    wrong = rid()
    refused = await http.post(
        "/api/v1/auth/login",
        json={"email": account.email, "password": "not the password"},
        headers={"X-Request-ID": wrong},
    )
    assert_error(refused, 401, "invalid_credentials")
    unknown = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    assert_error(
        await http.post("/api/v1/auth/login", json={"email": unknown, "password": "whatever1"}),
        401,
        "invalid_credentials",
    )
    right = rid()
    login = await http.post(
        "/api/v1/auth/login",
        json={"email": account.email, "password": account.password},
        headers={"X-Request-ID": right},
    )
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    out = await http.post(
        "/api/v1/auth/logout",
        json={"refresh_token": login.json()["refresh_token"]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert out.status_code == 204, out.text

    found = await rows(pool, actor=account.id)
    assert [(r["action"], r["outcome"]) for r in found] == [
        ("auth.registered", "success"),
        ("auth.login", "failure"),
        ("auth.login", "success"),
        ("auth.logout", "success"),
    ]
    failed, succeeded = found[1], found[2]
    assert failed["request_id"] == wrong
    assert succeeded["request_id"] == right
    assert {r["ip"] for r in found} == {"127.0.0.1"}
    assert {r["target"] for r in found} == {account.id}
    assert failed["details"] == {"email": account.email, "reason": "invalid_credentials"}
    assert all(r["project_id"] is None for r in found)
    assert abs(found[-1]["created_at"] - datetime.now(UTC)) < timedelta(minutes=1)

    # A wrong email has no actor: the row keeps the address that was tried.
    anonymous = [
        r
        for r in await rows(pool, action="auth.login")
        if r["actor_id"] is None and r["details"].get("email") == unknown
    ]
    assert [r["outcome"] for r in anonymous] == ["failure"]


async def test_refresh_token_reuse_is_audited(http: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    account = await register(http, "reuse")
    first = await http.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert first.status_code == 200, first.text
    again = await http.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert_error(again, 401, "refresh_token_reused")
    found = await rows(pool, actor=account.id, action="auth.refresh_reused")
    assert [r["outcome"] for r in found] == ["failure"]
    assert found[0]["details"]["family_id"]


async def test_mfa_events_are_audited(http: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    account = await register(http, "mfa")
    enrolled = await http.post(f"{MFA}/enrol", headers=account.headers)
    totp = pyotp.TOTP(enrolled.json()["secret"])
    confirmed = await http.post(
        f"{MFA}/confirm", json={"code": totp.now()}, headers=account.headers
    )
    assert confirmed.status_code == 200, confirmed.text
    recovery = confirmed.json()["recovery_codes"]

    async def challenge() -> str:
        answer = await http.post(
            "/api/v1/auth/login", json={"email": account.email, "password": account.password}
        )
        assert_error(answer, 401, "mfa_required")
        value: str = answer.json()["error"]["details"]["challenge"]
        return value

    code = await challenge()
    wrong = await http.post(f"{MFA}/login", json={"challenge": code, "code": "not-a-code-0000"})
    assert_error(wrong, 401, "invalid_mfa_code")
    right = await http.post(f"{MFA}/login", json={"challenge": code, "code": recovery[0]})
    assert right.status_code == 200, right.text
    disabled = await http.post(
        f"{MFA}/disable", json={"code": recovery[1]}, headers=account.headers
    )
    assert disabled.status_code == 200, disabled.text

    assert await actions(pool, actor=account.id) == [
        ("auth.registered", "success"),
        ("auth.mfa_enabled", "success"),
        ("auth.mfa_challenge", "success"),
        ("auth.mfa_login", "failure"),
        ("auth.mfa_login", "success"),
        ("auth.mfa_disabled", "success"),
    ]


async def test_project_and_member_changes_are_audited(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    owner = await register(http, "owner")
    member = await register(http, "member")
    request = rid()
    made = await http.post(
        "/api/v1/projects",
        json={"name": "audited"},
        headers={**owner.headers, "X-Request-ID": request},
    )
    assert made.status_code == 201, made.text
    project = made.json()
    pid = project["id"]
    # Recorded by the ProjectCreated workflow once the outbox started it.
    created = await wait_for_row(pool, project=pid, action="project.created")
    assert created["actor_id"] == uuid.UUID(owner.id)
    assert (created["request_id"], created["ip"]) == (request, "127.0.0.1")
    assert created["created_at"].isoformat() == project["created_at"]
    assert created["details"] == {"name": "audited"}

    base = f"/api/v1/projects/{pid}"
    patched = await http.patch(base, json={"description": "d"}, headers=owner.headers)
    assert patched.status_code == 200, patched.text
    added = await http.post(
        f"{base}/members", json={"email": member.email, "role": "viewer"}, headers=owner.headers
    )
    assert added.status_code == 201, added.text
    assert_error(
        await http.post(
            f"{base}/members", json={"email": member.email, "role": "editor"}, headers=owner.headers
        ),
        409,
        "already_member",
    )
    role = await http.patch(
        f"{base}/members/{member.id}", json={"role": "editor"}, headers=owner.headers
    )
    assert role.status_code == 200, role.text
    removed = await http.delete(f"{base}/members/{member.id}", headers=owner.headers)
    assert removed.status_code == 204, removed.text
    deleted = await http.delete(base, headers=owner.headers)
    assert deleted.status_code == 202, deleted.text

    # The project is gone; its audit trail is not.
    found = await rows(pool, project=pid)
    assert [r["action"] for r in found] == [
        "project.created",
        "project.updated",
        "member.added",
        "member.role_changed",
        "member.removed",
        "project.deleted",
    ]
    by_action = {r["action"]: r for r in found}
    assert by_action["project.updated"]["details"] == {"fields": ["description"]}
    assert by_action["member.added"]["target"] == member.id
    assert by_action["member.added"]["details"] == {"role": "viewer"}
    assert by_action["member.role_changed"]["details"] == {"from": "viewer", "to": "editor"}
    assert {r["actor_id"] for r in found} == {uuid.UUID(owner.id)}


async def test_file_changes_are_audited_with_their_versions(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    owner = await register(http, "files")
    pid = (await create_project(http, owner))["id"]
    base = f"/api/v1/projects/{pid}"
    request = rid()
    put = await http.put(
        f"{base}/files/src/a.py",
        json={"content": "a = 1\n"},
        headers={**owner.headers, "X-Request-ID": request},
    )
    assert put.status_code == 201, put.text
    again = await http.put(
        f"{base}/files/src/a.py", json={"content": "a = 2\n"}, headers=owner.headers
    )
    assert again.status_code == 200, again.text
    # Refused writes leave no row: the row commits with the version, or not at all.
    stale = await http.put(
        f"{base}/files/src/a.py",
        json={"content": "a = 3\n", "base_version": 1},
        headers=owner.headers,
    )
    assert_error(stale, 409, "version_conflict")
    restored = await http.post(
        f"{base}/restore", json={"path": "src/a.py", "version": 1}, headers=owner.headers
    )
    assert restored.status_code == 200, restored.text
    moved = await http.post(
        f"{base}/fs/move", json={"from": "src", "to": "lib"}, headers=owner.headers
    )
    assert moved.status_code == 200, moved.text
    gone = await http.delete(f"{base}/files/lib/a.py", headers=owner.headers)
    assert gone.status_code == 204, gone.text
    imported = await http.post(
        f"{base}/archive",
        content=tar_gz({"x.txt": b"x", "y/z.txt": b"z"}),
        headers={**owner.headers, "Content-Type": "application/gzip"},
    )
    assert imported.status_code == 200, imported.text

    found = [r for r in await rows(pool, project=pid) if r["action"].startswith("file.")]
    assert [(r["action"], r["target"]) for r in found] == [
        ("file.written", "src/a.py"),
        ("file.written", "src/a.py"),
        ("file.restored", "src/a.py"),
        ("file.moved", "src"),
        ("file.deleted", "lib/a.py"),
        ("file.imported", None),
    ]
    written, rewritten, restore, move, _, archive = found
    assert written["request_id"] == request
    assert written["details"] == {"files": [{"path": "src/a.py", "version": 1}], "count": 1}
    assert rewritten["details"]["files"] == [{"path": "src/a.py", "version": 2}]
    assert restore["details"] == {
        "restored_version": 1,
        "files": [{"path": "src/a.py", "version": 3}],
        "count": 1,
    }
    assert move["details"] == {"moved": [{"from": "src/a.py", "to": "lib/a.py"}], "count": 1}
    assert archive["details"]["count"] == 2
    assert sorted(f["path"] for f in archive["details"]["files"]) == ["x.txt", "y/z.txt"]
    assert {r["actor_id"] for r in found} == {uuid.UUID(owner.id)}


async def test_a_checkpoint_is_audited_not_the_keystrokes(
    http: httpx.AsyncClient, server: Server, pool: asyncpg.Pool
) -> None:
    owner = await register(http, "editor")
    pid = (await create_project(http, owner))["id"]
    put = await http.put(
        f"/api/v1/projects/{pid}/files/live.txt", json={"content": "x"}, headers=owner.headers
    )
    assert put.status_code == 201, put.text
    ws = await WSClient.connect(server, pid, owner.access_token)
    try:
        joined = await ws.join("live.txt")
        revision, text = joined["payload"]["revision"], joined["payload"]["content"]
        for seq in range(1, 11):
            op = ot.normalize([ot.utf16_len(text), str(seq % 10)])
            ref = await ws.send(
                "op", {"path": "live.txt", "revision": revision, "op": op, "seq": seq}
            )
            ack = await ws.reply(ref)
            assert ack["type"] == "ack", ack
            revision, text = ack["payload"]["revision"], ot.apply(text, op)
        await ws.send("leave", {"path": "live.txt"})
        # The last editor left: the live text is saved as one version, and audited once.
        checkpoint = await wait_for_row(pool, project=pid, action="file.checkpoint")
    finally:
        await ws.close()
    assert checkpoint["actor_id"] == uuid.UUID(owner.id)
    assert checkpoint["target"] == "live.txt"
    assert checkpoint["details"]["files"] == [{"path": "live.txt", "version": 2}]
    # Ten ops, one row. (project.created comes from a workflow, whenever it runs.)
    found = [r["action"] for r in await rows(pool, project=pid)]
    assert [a for a in found if a != "project.created"] == ["file.written", "file.checkpoint"]


async def test_ai_jobs_and_applies_are_audited(http: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    owner = await register(http, "ai")
    pid = (await create_project(http, owner))["id"]
    put = await http.put(
        f"/api/v1/projects/{pid}/files/a.py", json={"content": "a = 1\n"}, headers=owner.headers
    )
    assert put.status_code == 201, put.text
    started = await http.post(f"/api/v1/projects/{pid}/ai/reviews", json={}, headers=owner.headers)
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    row = await wait_for_row(pool, project=pid, action="ai.job_started")
    assert (row["target"], row["details"]) == (job_id, {"kind": "review"})

    # A finished job that proposes a change, as a generation job leaves it, applied over HTTP.
    proposed = uuid.uuid4()
    async with pool.acquire() as conn:
        await ai_store.create_job(
            conn,
            job_id=proposed,
            project_id=uuid.UUID(pid),
            user_id=uuid.UUID(owner.id),
            kind="generate",
            input={"prompt": "p"},
            workflow_id=f"test-{proposed}",
        )
        change = {"path": "a.py", "content": "a = 2\n", "base_version": 1}
        assert await ai_store.set_status(conn, proposed, "succeeded", result={"changes": [change]})
    applied = await http.post(
        f"/api/v1/projects/{pid}/ai/jobs/{proposed}/apply", headers=owner.headers
    )
    assert applied.status_code == 200, applied.text
    row = await wait_for_row(pool, project=pid, action="ai.applied")
    assert row["target"] == str(proposed)
    assert row["details"] == {
        "kind": "generate",
        "files": [{"path": "a.py", "version": 2}],
        "count": 1,
    }


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET action = 'forged'",
        "UPDATE audit_events SET outcome = 'success' WHERE false",
        "DELETE FROM audit_events",
        "DELETE FROM audit_events WHERE id < 0",
        "TRUNCATE audit_events",
    ],
)
async def test_the_audit_table_is_append_only(
    http: httpx.AsyncClient, pool: asyncpg.Pool, statement: str
) -> None:
    await register(http, "witness")
    async with pool.acquire() as conn:
        before = await conn.fetchval("SELECT count(*) FROM audit_events")
        # Refused for the table's owner too, the role the API connects as.
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute(statement)
        assert await conn.fetchval("SELECT count(*) FROM audit_events") >= before
        assert await conn.fetchval("SELECT count(*) FROM audit_events WHERE action = 'forged'") == 0


async def _page(http: httpx.AsyncClient, who: Account, url: str, **params: Any) -> dict[str, Any]:
    answer = await http.get(url, params=params, headers=who.headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def _all_pages(
    http: httpx.AsyncClient, who: Account, url: str, **params: Any
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        body = await _page(http, who, url, **params, **({"cursor": cursor} if cursor else {}))
        found.extend(body["items"])
        cursor = body.get("next_cursor")
        if cursor is None:
            return found


async def test_admins_page_and_filter_the_log(http: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    admin = await make_admin(http, pool)
    actor = await register(http, "actor")
    pid = (await create_project(http, actor))["id"]
    await wait_for_row(pool, project=pid, action="project.created")
    since = datetime.now(UTC).isoformat()
    for n in range(5):
        put = await http.put(
            f"/api/v1/projects/{pid}/files/f{n}.txt", json={"content": "x"}, headers=actor.headers
        )
        assert put.status_code == 201, put.text
    assert_error(
        await http.post("/api/v1/auth/login", json={"email": actor.email, "password": "wrong pw"}),
        401,
    )
    url = "/api/v1/admin/audit"

    paged = await _all_pages(http, admin, url, actor=actor.id, limit=2)
    assert [e["action"] for e in paged] == [
        "auth.login",
        *["file.written"] * 5,
        "project.created",
        "auth.registered",
    ]
    assert [e["target"] for e in paged[1:6]] == [f"f{n}.txt" for n in reversed(range(5))]
    assert len({e["id"] for e in paged}) == len(paged)  # no event on two pages
    times = [e["created_at"] for e in paged]
    assert times == sorted(times, reverse=True)  # newest first
    assert set(paged[0]) == {
        "id",
        "created_at",
        "action",
        "outcome",
        "actor_id",
        "project_id",
        "target",
        "request_id",
        "ip",
        "details",
    }
    first = await _page(http, admin, url, actor=actor.id, limit=2)
    assert len(first["items"]) == 2
    assert first["next_cursor"]

    writes = await _all_pages(http, admin, url, project=pid, action="file.written")
    assert len(writes) == 5
    assert {e["project_id"] for e in writes} == {pid}
    family = await _all_pages(http, admin, url, actor=actor.id, action="auth.*")
    assert {e["action"] for e in family} == {"auth.registered", "auth.login"}
    failures = await _all_pages(http, admin, url, actor=actor.id, outcome="failure")
    assert [(e["action"], e["outcome"]) for e in failures] == [("auth.login", "failure")]
    recent = await _all_pages(http, admin, url, actor=actor.id, since=since)
    assert "auth.registered" not in {e["action"] for e in recent}
    assert len(recent) == 6
    older = await _all_pages(http, admin, url, actor=actor.id, until=since)
    assert "auth.registered" in {e["action"] for e in older}
    assert not {e["id"] for e in older} & {e["id"] for e in recent}

    for params, code in (
        ({"actor": "nope"}, "validation_error"),
        ({"project": "nope"}, "validation_error"),
        ({"since": "yesterday"}, "validation_error"),
        ({"since": "2024-01-01T00:00:00"}, "validation_error"),  # no time zone
        ({"outcome": "maybe"}, "validation_error"),
        ({"limit": "0"}, "validation_error"),
        ({"limit": "501"}, "validation_error"),
        ({"cursor": "!!"}, "invalid_cursor"),
    ):
        assert_error(await http.get(url, params=params, headers=admin.headers), 400, code)


async def test_owners_read_their_projects_log_and_nobody_else(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    owner = await register(http, "owner")
    editor = await register(http, "editor")
    outsider = await register(http, "outsider")
    pid = (await create_project(http, owner))["id"]
    other = (await create_project(http, owner))["id"]
    base = f"/api/v1/projects/{pid}"
    added = await http.post(
        f"{base}/members", json={"email": editor.email, "role": "editor"}, headers=owner.headers
    )
    assert added.status_code == 201, added.text
    put = await http.put(f"{base}/files/a.txt", json={"content": "a"}, headers=editor.headers)
    assert put.status_code == 201, put.text
    elsewhere = await http.put(
        f"/api/v1/projects/{other}/files/b.txt", json={"content": "b"}, headers=owner.headers
    )
    assert elsewhere.status_code == 201, elsewhere.text

    found = await _all_pages(http, owner, f"{base}/audit")
    assert {e["project_id"] for e in found} == {pid}
    assert {"member.added", "file.written"} <= {e["action"] for e in found}
    by_editor = await _all_pages(http, owner, f"{base}/audit", actor=editor.id)
    assert [(e["action"], e["target"]) for e in by_editor] == [("file.written", "a.txt")]
    # `project=` cannot widen a project's log to another project.
    widened = await _all_pages(http, owner, f"{base}/audit", project=other)
    assert {e["project_id"] for e in widened} == {pid}

    assert_error(await http.get(f"{base}/audit", headers=editor.headers), 403, "forbidden")
    assert_error(await http.get(f"{base}/audit", headers=outsider.headers), 404, "not_found")
    assert_error(await http.get(f"{base}/audit"), 401, "unauthorized")
