"""/openapi.json is a valid document of every route, good enough for a generated client."""

from __future__ import annotations

import asyncio
import importlib
import json
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from tests.conftest import Server
from tests.support import unique_email

# Left out on purpose: the IDE page and its bundle are not API, and the document does not
# list itself.
UNDOCUMENTED = {"openapi", "ui.page", "ui.static"}
HTTP_METHODS = {"get", "put", "post", "delete", "patch"}
ERROR_REF = "#/components/schemas/Error"
# Answers that are not the Error body, on purpose: a readiness probe says only up or down.
NOT_ERROR_SHAPED = {("/readyz", "get", "503")}
GENERATOR = Path(sys.executable).parent / "openapi-python-client"
PACKAGE = "vaporform_generated_client"


@pytest.fixture
async def spec(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def rule_path(rule: str) -> str:
    """`<project_id>` and `<path:path>` as OpenAPI templates them."""
    return re.sub(r"<(?:\w+(?:\([^)]*\))?:)?(\w+)>", r"{\1}", rule)


def refers_to_error(schema: dict[str, Any]) -> bool:
    return schema.get("$ref") == ERROR_REF or any(
        s.get("$ref") == ERROR_REF for s in schema.get("anyOf", [])
    )


async def test_the_document_is_valid_openapi(spec: dict[str, Any]) -> None:
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    # Two models of one name would be one class in a client (web/openapi.py).
    assert "x-schema-name-conflicts" not in spec
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["bearer"]["description"],
    }
    assert schemes["ws_ticket"]["in"] == "query"
    assert spec["security"] == [{"bearer": []}]
    ids = [operation["operationId"] for _, _, operation in operations(spec)]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


async def test_every_route_is_documented_at_its_real_path(
    server: Server, spec: dict[str, Any]
) -> None:
    documented = 0
    for rule in server.app.url_map.iter_rules():
        if rule.endpoint in UNDOCUMENTED:
            continue
        path = rule_path(rule.rule)
        assert path in spec["paths"], f"{rule.rule} ({rule.endpoint}) is missing"
        methods = {m.lower() for m in rule.methods or ()} - {"head", "options"}
        for method in methods:
            operation = spec["paths"][path].get(method)
            assert operation is not None, f"{method} {path} ({rule.endpoint}) is missing"
            named = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert named == set(rule.arguments), (path, named)
            documented += 1
    assert documented == sum(1 for _ in operations(spec))
    assert "/api/v1/projects/{project_id}/files/{path}" in spec["paths"]
    assert "/api/v1/projects/{path}" not in spec["paths"]
    files = spec["paths"]["/api/v1/projects/{project_id}/files/{path}"]
    assert {"get", "put", "delete"} <= set(files)


async def test_every_operation_documents_success_and_errors(spec: dict[str, Any]) -> None:
    for path, method, operation in operations(spec):
        where = f"{method} {path}"
        responses = operation["responses"]
        statuses = set(responses)
        if "x-websocket" in operation:
            assert "101" in statuses, where
            assert "docs/protocol.md" in operation["description"], where
        else:
            assert any(s.startswith("2") for s in statuses), where
        assert "500" in statuses, where
        security = operation.get("security", spec["security"])
        # Every alternative names a scheme (none is `{}`, anonymous), one of them the bearer.
        if security and all(security) and any("bearer" in s for s in security):
            assert "401" in statuses, where
        if "{" in path:
            assert "404" in statuses, where
        if "requestBody" in operation:
            assert "413" in statuses, where
            if "application/json" in operation["requestBody"]["content"]:
                assert "400" in statuses, where
        for status, response in responses.items():
            assert response["description"], (where, status)
            if status[0] in "45" and (path, method, status) not in NOT_ERROR_SHAPED:
                schema = response["content"]["application/json"]["schema"]
                assert refers_to_error(schema), (where, status, schema)
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]


async def test_documented_query_parameters_and_no_content(spec: dict[str, Any]) -> None:
    history = spec["paths"]["/api/v1/projects/{project_id}/history"]["get"]
    required = {p["name"]: p.get("required", False) for p in history["parameters"]}
    assert required == {"project_id": True, "path": True}
    listing = spec["paths"]["/api/v1/projects"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"limit", "cursor"}
    member = "/api/v1/projects/{project_id}/members/{user_id}"
    assert "content" not in spec["paths"][member]["delete"]["responses"]["204"]
    # Deleting a project is a workflow: 202 with what it started.
    deleted = spec["paths"]["/api/v1/projects/{project_id}"]["delete"]["responses"]
    assert "204" not in deleted
    assert "application/json" in deleted["202"]["content"]
    archive = spec["paths"]["/api/v1/projects/{project_id}/archive"]
    assert "application/gzip" in archive["get"]["responses"]["200"]["content"]
    assert "application/gzip" in archive["post"]["requestBody"]["content"]


async def _generate(spec: dict[str, Any], where: Path) -> Path:
    (where / "spec.json").write_text(json.dumps(spec))
    config = {
        "project_name_override": "vaporform-generated-client",
        "package_name_override": PACKAGE,
        # The generator's formatting hooks need ruff on PATH; the code runs the same without.
        "post_hooks": [],
        # Archives are bytes to a client; the generator knows bytes as octet-stream.
        "content_type_overrides": {"application/gzip": "application/octet-stream"},
    }
    (where / "config.json").write_text(json.dumps(config))
    out = where / "client"
    process = await asyncio.create_subprocess_exec(
        str(GENERATOR),
        "generate",
        "--path",
        str(where / "spec.json"),
        "--config",
        str(where / "config.json"),
        "--output-path",
        str(out),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    text = output.decode()
    assert process.returncode == 0, text
    # A warning is an operation or a schema the generator could not use.
    assert "WARNING" not in text, text
    assert "Unable to" not in text, text
    return out


@pytest.fixture
def generated_client(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
        del sys.modules[name]
    if str(tmp_path / "client") in sys.path:
        sys.path.remove(str(tmp_path / "client"))


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


async def test_a_generated_client_works(
    spec: dict[str, Any], server: Server, generated_client: Path
) -> None:
    out = await _generate(spec, generated_client)
    sys.path.insert(0, str(out))
    client_module = _module("client")
    models = _module("models")
    register = _module("api.auth.auth_register")
    create_project = _module("api.projects.projects_create_project")
    write_file = _module("api.files.files_write_file")
    read_file = _module("api.files.files_read_file")
    history = _module("api.files.files_history")

    anonymous = client_module.Client(base_url=server.base_url, raise_on_unexpected_status=True)
    async with anonymous:
        email = unique_email("generated")
        registered = await register.asyncio_detailed(
            client=anonymous,
            body=models.RegisterIn(email=email, password="correct horse battery", name="Gen"),
        )
        assert registered.status_code == 201
        tokens = registered.parsed
        assert isinstance(tokens, models.TokensOut)
        assert tokens.user.email == email

        taken = await register.asyncio_detailed(
            client=anonymous,
            body=models.RegisterIn(email=email, password="correct horse battery", name="Gen"),
        )
        assert taken.status_code == 409
        assert isinstance(taken.parsed, models.Error)
        assert taken.parsed.error.code == "email_taken"

    client = client_module.AuthenticatedClient(
        base_url=server.base_url, token=tokens.access_token, raise_on_unexpected_status=True
    )
    async with client:
        project = await create_project.asyncio(
            client=client, body=models.ProjectIn(name="generated")
        )
        assert isinstance(project, models.ProjectOut)
        assert project.role == "owner"

        path = "src/app.py"
        written = await write_file.asyncio_detailed(
            project.id, path, client=client, body=models.FileWrite(content="print('hi')\n")
        )
        assert written.status_code == 201
        assert isinstance(written.parsed, models.WriteOut)
        assert (written.parsed.path, written.parsed.version) == (path, 1)
        again = await write_file.asyncio_detailed(
            project.id,
            path,
            client=client,
            body=models.FileWrite(content="print('hello')\n", base_version=1, message="greet"),
        )
        assert again.status_code == 200
        stale = await write_file.asyncio_detailed(
            project.id, path, client=client, body=models.FileWrite(content="x", base_version=1)
        )
        assert stale.status_code == 409
        assert isinstance(stale.parsed, models.Error)
        assert stale.parsed.error.code == "version_conflict"
        assert stale.parsed.error.details["current_version"] == 2

        read = await read_file.asyncio(project.id, path, client=client)
        assert isinstance(read, models.FileOut)
        assert (read.content, read.version, read.language) == ("print('hello')\n", 2, "python")
        first = await read_file.asyncio(project.id, path, client=client, version=1)
        assert first is not None
        assert first.content == "print('hi')\n"
        missing = await read_file.asyncio_detailed(str(uuid.uuid4()), path, client=client)
        assert missing.status_code == 404
        assert isinstance(missing.parsed, models.Error)

        versions = await history.asyncio(project.id, client=client, path=path)
        assert isinstance(versions, models.HistoryOut)
        assert [v.version for v in versions.items] == [2, 1]
        assert versions.items[0].message == "greet"
