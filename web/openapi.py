"""The OpenAPI document at `/openapi.json`, complete enough for a generated client.

quart-schema builds it from the route rules and the declarations next to each route: its own
`validate_request`, `document_request`, `document_querystring`, `document_headers`,
`document_response` and `security_scheme`, and this module's `document_errors`,
`document_no_content`, `document_optional_request`, `document_raw_request`,
`document_raw_response` and `document_websocket`. `Provider` is the one step after it:

- every path as the route has it: quart-schema's own pattern turns
  `<project_id>/files/<path:path>` into a single `{path}`, its `[^:]*` running over `>`;
- query parameters that their model requires are marked required, JSON bodies that the route
  validates too;
- each operation is named after its endpoint (`files_read_file`: unique, where quart-schema's
  `post_login` is not) and tagged with its blueprint;
- a route's own request and response models become components, as the models inside them
  already are (one class per model in a generated client); two different models of one name
  are listed under `x-schema-name-conflicts`, which the tests refuse;
- every answer names its `X-Request-ID` header, a 429 its `Retry-After`;
- every operation gets the error answers that hold for every route, each with the one `Error`
  body of DESIGN decision 10: 500 everywhere; 401, and 403 `mfa_enrolment_required`, where a
  bearer token is needed; 400 and 413 where a body is taken; 404 where the path has
  parameters (a project the caller may not see is not found). What a route answers beyond
  that it declares with `document_errors`;
- WebSocket routes, which quart-schema leaves out, are the GET that upgrades (101), with the
  messages in docs/protocol.md.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any, TypeVar

from pydantic import BaseModel, Field
from quart import Quart
from quart_schema import Info, OpenAPIProvider, QuartSchema, document_request
from quart_schema.conversion import model_schema
from quart_schema.openapi import QUART_SCHEMA_HIDDEN_ATTRIBUTE
from quart_schema.validation import DataSource
from werkzeug.routing import Rule
from werkzeug.routing.converters import PathConverter

from vaporform import __version__
from web.second_factor import ENROLMENT_ENDPOINTS

T = TypeVar("T", bound=Callable[..., Any])

ERRORS_ATTRIBUTE = "_vaporform_openapi_errors"
NO_CONTENT_ATTRIBUTE = "_vaporform_openapi_no_content"
OPTIONAL_BODY_ATTRIBUTE = "_vaporform_openapi_optional_body"
RAW_REQUEST_ATTRIBUTE = "_vaporform_openapi_raw_request"
RAW_RESPONSE_ATTRIBUTE = "_vaporform_openapi_raw_response"
WEBSOCKET_ATTRIBUTE = "_vaporform_openapi_websocket"

ERROR_REF = {"$ref": "#/components/schemas/Error"}
BINARY = {"type": "string", "format": "binary"}
# A rule's variable, `<name>` or `<converter(args):name>`, never reaching past its own `>`.
_VARIABLE = re.compile(r"<(?:[^:<>]*:)?([^<>]+)>")

DESCRIPTION = """\
REST for auth, projects, files, containers and AI jobs; WebSockets for live collaboration and
terminals (the GET operations answering 101: their messages are in `docs/protocol.md`).

Every 4xx and 5xx answer has the `Error` body, `{"error": {"code", "message", "details"}}`,
with a stable snake_case `code`; each operation lists the statuses it can answer and the codes
behind them. Authenticate with `Authorization: Bearer <access_token>` from
`POST /api/v1/auth/login` or `/register`; WebSockets also take a single-use `?ticket=` from
`POST /api/v1/auth/ws-ticket`."""

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The access_token of a login, register or refresh answer.",
    },
    "ws_ticket": {
        "type": "apiKey",
        "in": "query",
        "name": "ticket",
        "description": "WebSockets only: a single-use ticket from POST /api/v1/auth/ws-ticket "
        "(about 30 s), so that browsers never put a JWT in a URL.",
    },
    "session_cookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "vf_refresh",
        "description": "Browser sessions: the httpOnly refresh cookie set by a sign-in made "
        "with `X-Vaporform-Session: cookie` (docs/ui.md).",
    },
}


HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The request's id, as sent (when short and plain) or made; every log "
        "line about the request carries it",
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds until the rate limit's window ends",
        "schema": {"type": "integer"},
    },
}


class ErrorBody(BaseModel):
    code: str = Field(description="stable, snake_case: what clients switch on")
    message: str = Field(description="for people; may change")
    details: dict[str, Any] = Field(description="facts about this error, by code")


class Error(BaseModel):
    """Every 4xx and 5xx answer: `{"error": {"code", "message", "details"}}`."""

    error: ErrorBody


# --- declarations next to a route -------------------------------------------------------------


def document_errors(*answers: int | tuple[int, str]) -> Callable[[T], T]:
    """The error statuses this route answers beyond those of every route (module docstring),
    each optionally with the codes behind it: `document_errors(403, (409, "`version_conflict`"))`.
    """

    def decorator(func: T) -> T:
        found: dict[int, list[str]] = {
            status: list(texts) for status, texts in getattr(func, ERRORS_ATTRIBUTE, {}).items()
        }
        for answer in answers:
            status, text = answer if isinstance(answer, tuple) else (answer, "")
            found.setdefault(status, [])
            if text:
                found[status].append(text)
        setattr(func, ERRORS_ATTRIBUTE, found)
        return func

    return decorator


def document_no_content(description: str) -> Callable[[T], T]:
    """The route's success is a 204 without a body."""

    def decorator(func: T) -> T:
        setattr(func, NO_CONTENT_ATTRIBUTE, description)
        return func

    return decorator


def document_optional_request(model: type[BaseModel]) -> Callable[[T], T]:
    """A JSON body the route reads itself and may go without (quart-schema's
    `document_request`, not required)."""

    def decorator(func: T) -> T:
        setattr(func, OPTIONAL_BODY_ATTRIBUTE, True)
        documented: T = document_request(model)(func)
        return documented

    return decorator


def document_raw_request(media_type: str, description: str) -> Callable[[T], T]:
    """A body that is not JSON (an archive), taken as bytes."""

    def decorator(func: T) -> T:
        setattr(func, RAW_REQUEST_ATTRIBUTE, (media_type, description))
        return func

    return decorator


def document_raw_response(media_type: str, description: str, status: int = 200) -> Callable[[T], T]:
    """An answer that is not JSON (an archive)."""

    def decorator(func: T) -> T:
        setattr(func, RAW_RESPONSE_ATTRIBUTE, (media_type, description, status))
        return func

    return decorator


def document_websocket(summary: str, protocol: str) -> Callable[[T], T]:
    """A WebSocket route: what it carries, and where its messages are described."""

    def decorator(func: T) -> T:
        setattr(func, WEBSOCKET_ATTRIBUTE, (summary, protocol))
        return func

    return decorator


# --- the document -------------------------------------------------------------------------------


def openapi_path(rule: str) -> str:
    """`/a/<x>/b/<path:p>` as OpenAPI writes it: `/a/{x}/b/{p}`."""
    return _VARIABLE.sub(r"{\1}", rule)


def _error_components() -> dict[str, Any]:
    schema = model_schema(Error, preference="pydantic", schema_mode="serialization")
    definitions: dict[str, Any] = schema.pop("$defs", {})
    return {**definitions, "Error": schema}


class Provider(OpenAPIProvider):
    def __init__(self, app: Quart, extension: QuartSchema) -> None:
        super().__init__(app, extension)
        self._components: dict[str, Any] = {}
        self._conflicts: set[str] = set()

    def schema(self) -> dict[str, Any]:
        errors = _error_components()
        self._components, self._conflicts = dict(errors), set()
        document = super().schema()
        document["info"]["description"] = DESCRIPTION
        document["components"]["schemas"].update(errors)
        if self._conflicts:
            # Two models of one name: a client would get one class for both. Rename one;
            # tests/web/test_openapi.py fails on this.
            document["x-schema-name-conflicts"] = sorted(self._conflicts)
        document["components"]["securitySchemes"] = copy.deepcopy(SECURITY_SCHEMES)
        document["components"]["headers"] = copy.deepcopy(HEADERS)
        return document

    def generate_rules(self) -> Iterable[Rule]:
        # quart-schema's own leaves WebSocket routes out.
        for rule in self._app.url_map.iter_rules():
            view = self._app.view_functions[rule.endpoint]
            if not getattr(view, QUART_SCHEMA_HIDDEN_ATTRIBUTE, False):
                yield rule

    def build_querystring_parameters(
        self, model: type[Any]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        parameters, definitions = super().build_querystring_parameters(model)
        required = set(model_schema(model, preference="pydantic").get("required", []))
        for parameter in parameters:
            if parameter["name"] in required:
                parameter["required"] = True
        return parameters, definitions

    def build_response_object(
        self, model: type[Any], headers_model: type[Any] | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        response, definitions = super().build_response_object(model, headers_model)
        media = response["content"]["application/json"]
        media["schema"] = self._component(media["schema"], definitions)
        return response, definitions

    def build_request_body(
        self, model: type[Any], source: DataSource
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        body, definitions = super().build_request_body(model, source)
        for media in body["content"].values():
            media["schema"] = self._component(media["schema"], definitions)
        return body, definitions

    def _component(self, schema: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
        """A route's own model as a component, as the models inside it already are: one class
        per model in a generated client, where inline schemas would be one per use."""
        name = schema.get("title")
        if not isinstance(name, str) or schema.get("type") != "object":
            return schema
        definitions[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        built, components = super().build_paths(rule)
        for name, definition in components.items():
            if self._components.setdefault(name, definition) != definition:
                self._conflicts.add(name)
        view = self._app.view_functions[rule.endpoint]
        operations: dict[str, Any] = {}
        for found in built.values():  # one entry, under quart-schema's (maybe wrong) path
            for method, operation in found.items():
                name = rule.endpoint.replace(".", "_")
                operation = copy.deepcopy(operation)
                operation["operationId"] = f"{name}_{method}" if len(found) > 1 else name
                operations[method] = self._complete(operation, rule, view)
        return {openapi_path(rule.rule): operations}, components

    def _complete(self, operation: dict[str, Any], rule: Rule, view: Any) -> dict[str, Any]:
        blueprint = rule.endpoint.rpartition(".")[0]
        if blueprint and "tags" not in operation:
            operation["tags"] = [blueprint]
        for parameter in operation["parameters"]:
            converter = rule._converters.get(parameter["name"])
            if parameter["in"] == "path" and isinstance(converter, PathConverter):
                parameter["description"] = "a path inside the project: it may contain `/`"
        responses: dict[str, Any] = {str(s): r for s, r in operation["responses"].items()}
        errors: dict[int, list[str]] = {
            500: ["`internal_error`: a bug, logged with the request id"]
        }

        if rule.websocket:
            self._websocket(operation, view, responses, errors)
        if (description := getattr(view, NO_CONTENT_ATTRIBUTE, None)) is not None:
            responses["204"] = {"description": description}
        if (raw := getattr(view, RAW_RESPONSE_ATTRIBUTE, None)) is not None:
            media_type, description, status = raw
            responses[str(status)] = {
                "description": description,
                "content": {media_type: {"schema": BINARY}},
            }
        if (raw := getattr(view, RAW_REQUEST_ATTRIBUTE, None)) is not None:
            media_type, description = raw
            operation["requestBody"] = {
                "description": description,
                "required": True,
                "content": {media_type: {"schema": BINARY}},
            }
        elif "requestBody" in operation:
            operation["requestBody"]["required"] = not getattr(view, OPTIONAL_BODY_ATTRIBUTE, False)
            errors[400] = [
                "`invalid_json`, `invalid_encoding` or `validation_error` (`details.errors`): "
                "the body does not fit its schema"
            ]
        if "requestBody" in operation:
            errors[413] = ["`too_large`: the body is over this route's limit"]

        security = operation.get("security", self._extension.security or [])
        if security and all(security) and any("bearer" in s for s in security):
            errors[401] = [
                "`unauthorized`: no valid bearer token (missing, expired or revoked, or the "
                "account is disabled or gone)"
            ]
            if rule.endpoint not in ENROLMENT_ENDPOINTS:
                errors[403] = [
                    "`mfa_enrolment_required`: this deployment requires MFA and the caller "
                    "has not enrolled"
                ]
        if rule.arguments:
            errors[404] = ["`not_found`: no such resource, or not one the caller may see"]

        for status, texts in getattr(view, ERRORS_ATTRIBUTE, {}).items():
            errors.setdefault(status, []).extend(texts)
        for status, texts in errors.items():
            description = "; ".join(dict.fromkeys(texts)) or HTTPStatus(status).phrase
            declared = responses.get(str(status))
            if declared is None:
                responses[str(status)] = {
                    "description": description,
                    "content": {"application/json": {"schema": ERROR_REF}},
                }
                continue
            # A model documented for an error status (the `mfa_required` 401 of a login) is
            # one of the bodies of that status; the others are the plain `Error`.
            media = declared["content"]["application/json"]
            media["schema"] = {"anyOf": [media["schema"], ERROR_REF]}
            first = declared["description"].rstrip(".")
            declared["description"] = f"{first}; otherwise {description}" if first else description

        for status, response in responses.items():
            if not response.get("description"):
                response["description"] = HTTPStatus(int(status)).phrase
            if status != "101":  # the upgrade is answered before the app's own headers
                headers = response.setdefault("headers", {})
                headers["X-Request-ID"] = {"$ref": "#/components/headers/X-Request-ID"}
                if status == "429":
                    headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    @staticmethod
    def _websocket(
        operation: dict[str, Any],
        view: Any,
        responses: dict[str, Any],
        errors: dict[int, list[str]],
    ) -> None:
        summary, protocol = getattr(view, WEBSOCKET_ATTRIBUTE, ("A WebSocket", "docs/protocol.md"))
        operation["summary"] = f"WebSocket: {summary}"
        operation["description"] = (
            "Open with a GET that upgrades (`Connection: Upgrade`, `Upgrade: websocket`); the "
            f"messages are described in {protocol}. A refusal comes before the upgrade, as an "
            "ordinary HTTP answer with the `Error` body."
        )
        operation["x-websocket"] = {"protocol": protocol}
        operation.setdefault("security", [{"bearer": []}, {"ws_ticket": []}])
        responses["101"] = {"description": "Switching Protocols: the WebSocket is open"}
        errors[400] = ["`bad_request`: not a WebSocket upgrade"]


def init_openapi(app: Quart) -> QuartSchema:
    """Serve the document at /openapi.json; bearer auth unless a route says otherwise."""
    return QuartSchema(
        app,
        info=Info(title="Vaporform API", version=__version__),
        security=[{"bearer": []}],
        # The bundled doc pages load scripts from a CDN; /openapi.json is the reference.
        swagger_ui_path=None,
        redoc_ui_path=None,
        scalar_ui_path=None,
        openapi_provider_class=Provider,
    )
