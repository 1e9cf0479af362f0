"""Projects and members: visibility, roles and the contract's shapes."""

from __future__ import annotations

import uuid

import httpx

from tests.support import Account, assert_error, create_project, register

PROJECT_FIELDS = {
    "id",
    "name",
    "description",
    "config",
    "metadata",
    "owner_id",
    "role",
    "created_at",
    "updated_at",
}


async def _add(http: httpx.AsyncClient, owner: Account, pid: str, who: Account, role: str) -> None:
    response = await http.post(
        f"/api/v1/projects/{pid}/members",
        json={"email": who.email, "role": role},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["role"] == role


async def test_create_get_patch_list_delete(http: httpx.AsyncClient) -> None:
    owner = await register(http, "owner")
    project = await create_project(
        http, owner, name="alpha", description="first", config={"runtime": {"image": "python"}}
    )
    assert set(project) == PROJECT_FIELDS
    assert project["role"] == "owner"
    assert project["owner_id"] == owner.id
    assert project["config"] == {"runtime": {"image": "python"}}
    assert project["metadata"] == {}
    pid = project["id"]

    got = await http.get(f"/api/v1/projects/{pid}", headers=owner.headers)
    assert got.json() == project

    patched = await http.patch(
        f"/api/v1/projects/{pid}",
        json={"name": "beta", "config": {"x": [1, 2]}},
        headers=owner.headers,
    )
    assert patched.status_code == 200
    assert patched.json()["name"] == "beta"
    assert patched.json()["description"] == "first"
    assert patched.json()["config"] == {"x": [1, 2]}

    listed = await http.get("/api/v1/projects", headers=owner.headers)
    assert [p["id"] for p in listed.json()["items"]] == [pid]

    deleted = await http.delete(f"/api/v1/projects/{pid}", headers=owner.headers)
    assert deleted.status_code == 202, deleted.text  # hidden now, removed by ProjectDeletion
    assert_error(await http.get(f"/api/v1/projects/{pid}", headers=owner.headers), 404)


async def test_listing_shows_only_the_callers_projects(http: httpx.AsyncClient) -> None:
    alice, bob = await register(http, "alice"), await register(http, "bob")
    mine = await create_project(http, alice, name="mine")
    await create_project(http, bob, name="theirs")
    shared = await create_project(http, bob, name="shared")
    await _add(http, bob, shared["id"], alice, "viewer")
    listed = (await http.get("/api/v1/projects", headers=alice.headers)).json()["items"]
    assert {p["id"] for p in listed} == {mine["id"], shared["id"]}
    assert {p["id"]: p["role"] for p in listed}[shared["id"]] == "viewer"


async def test_every_project_route_answers_404_to_a_non_member(http: httpx.AsyncClient) -> None:
    owner, stranger = await register(http, "owner"), await register(http, "stranger")
    pid = (await create_project(http, owner))["id"]
    routes = [
        ("GET", f"/api/v1/projects/{pid}", None),
        ("PATCH", f"/api/v1/projects/{pid}", {"name": "mine now"}),
        ("DELETE", f"/api/v1/projects/{pid}", None),
        ("GET", f"/api/v1/projects/{pid}/members", None),
        ("POST", f"/api/v1/projects/{pid}/members", {"email": stranger.email, "role": "owner"}),
        ("PATCH", f"/api/v1/projects/{pid}/members/{owner.id}", {"role": "viewer"}),
        ("DELETE", f"/api/v1/projects/{pid}/members/{owner.id}", None),
        ("DELETE", f"/api/v1/projects/{pid}/members/{stranger.id}", None),
    ]
    for method, path, body in routes:
        response = await http.request(method, path, json=body, headers=stranger.headers)
        assert_error(response, 404, "not_found")
    # An id that is no project at all, or no id at all, looks the same.
    for pid_like in (str(uuid.uuid4()), "not-a-uuid"):
        response = await http.get(f"/api/v1/projects/{pid_like}", headers=stranger.headers)
        assert_error(response, 404, "not_found")
    # And the project is untouched.
    got = await http.get(f"/api/v1/projects/{pid}", headers=owner.headers)
    assert got.json()["name"] == "demo"


async def test_viewers_read_but_never_write(http: httpx.AsyncClient) -> None:
    owner, viewer = await register(http, "owner"), await register(http, "viewer")
    pid = (await create_project(http, owner))["id"]
    await _add(http, owner, pid, viewer, "viewer")
    assert (await http.get(f"/api/v1/projects/{pid}", headers=viewer.headers)).status_code == 200
    members = await http.get(f"/api/v1/projects/{pid}/members", headers=viewer.headers)
    assert {m["role"] for m in members.json()["items"]} == {"owner", "viewer"}
    writes = [
        ("PATCH", f"/api/v1/projects/{pid}", {"name": "renamed"}),
        ("DELETE", f"/api/v1/projects/{pid}", None),
        ("POST", f"/api/v1/projects/{pid}/members", {"email": owner.email, "role": "viewer"}),
        ("PATCH", f"/api/v1/projects/{pid}/members/{viewer.id}", {"role": "owner"}),
        ("DELETE", f"/api/v1/projects/{pid}/members/{owner.id}", None),
    ]
    for method, path, body in writes:
        response = await http.request(method, path, json=body, headers=viewer.headers)
        error = assert_error(response, 403, "forbidden")
        assert error["details"]["role"] == "viewer"


async def test_editors_edit_but_only_owners_manage(http: httpx.AsyncClient) -> None:
    owner, editor = await register(http, "owner"), await register(http, "editor")
    extra = await register(http, "extra")
    pid = (await create_project(http, owner))["id"]
    await _add(http, owner, pid, editor, "editor")
    patched = await http.patch(
        f"/api/v1/projects/{pid}", json={"description": "edited"}, headers=editor.headers
    )
    assert patched.status_code == 200
    assert patched.json()["role"] == "editor"
    add = await http.post(
        f"/api/v1/projects/{pid}/members",
        json={"email": extra.email, "role": "viewer"},
        headers=editor.headers,
    )
    assert_error(add, 403, "forbidden")
    assert_error(await http.delete(f"/api/v1/projects/{pid}", headers=editor.headers), 403)


async def test_member_management(http: httpx.AsyncClient) -> None:
    owner, other = await register(http, "owner"), await register(http, "other")
    pid = (await create_project(http, owner))["id"]
    base = f"/api/v1/projects/{pid}/members"
    await _add(http, owner, pid, other, "viewer")
    again = await http.post(
        base, json={"email": other.email, "role": "editor"}, headers=owner.headers
    )
    assert_error(again, 409, "already_member")
    nobody = await http.post(
        base, json={"email": "nobody@example.com", "role": "editor"}, headers=owner.headers
    )
    assert_error(nobody, 404, "user_not_found")
    bad_role = await http.post(
        base, json={"email": other.email, "role": "god"}, headers=owner.headers
    )
    assert_error(bad_role, 400, "validation_error")

    promoted = await http.patch(
        f"{base}/{other.id}", json={"role": "editor"}, headers=owner.headers
    )
    assert promoted.json()["role"] == "editor"

    # The last owner can neither be demoted nor leave.
    demote = await http.patch(f"{base}/{owner.id}", json={"role": "viewer"}, headers=owner.headers)
    assert_error(demote, 409, "last_owner")
    leave = await http.delete(f"{base}/{owner.id}", headers=owner.headers)
    assert_error(leave, 409, "last_owner")

    # A member may leave on their own; then the project is gone for them.
    left = await http.delete(f"{base}/{other.id}", headers=other.headers)
    assert left.status_code == 204
    assert_error(await http.get(f"/api/v1/projects/{pid}", headers=other.headers), 404)
    missing = await http.delete(f"{base}/{other.id}", headers=owner.headers)
    assert_error(missing, 404, "not_found")


async def test_project_input_is_validated(http: httpx.AsyncClient) -> None:
    owner = await register(http)
    cases = [
        {},
        {"name": ""},
        {"name": 42},
        {"name": "x" * 201},
        {"name": "ok", "config": []},
        {"name": "ok", "config": {"blob": "x" * 70_000}},
        {"name": "ok", "owner_id": owner.id},
    ]
    for body in cases:
        response = await http.post("/api/v1/projects", json=body, headers=owner.headers)
        assert_error(response, 400, "validation_error")
    listed = await http.get("/api/v1/projects", headers=owner.headers)
    assert listed.json()["items"] == []


async def test_listing_is_paginated_newest_first(http: httpx.AsyncClient) -> None:
    owner = await register(http, "pager")
    created = [(await create_project(http, owner, name=f"p{i}"))["id"] for i in range(7)]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = (await http.get("/api/v1/projects", params=params, headers=owner.headers)).json()
        seen += [p["id"] for p in page["items"]]
        pages += 1
        cursor = page.get("next_cursor")
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(created))
    everything = (await http.get("/api/v1/projects", headers=owner.headers)).json()
    assert [p["id"] for p in everything["items"]] == seen
    assert "next_cursor" not in everything
    for bad in ({"limit": "0"}, {"limit": "501"}, {"limit": "x"}):
        response = await http.get("/api/v1/projects", params=bad, headers=owner.headers)
        assert_error(response, 400, "validation_error")
    forged = await http.get(
        "/api/v1/projects", params={"cursor": "nonsense"}, headers=owner.headers
    )
    assert_error(forged, 400, "invalid_cursor")
