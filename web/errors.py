"""One error type for the HTTP edge and the handlers that turn everything into JSON.

Every 4xx and 5xx leaves as `{"error": {"code", "message", "details"}}` with a stable
snake_case code, whether it came from our code, from schema validation, from routing (404/405),
from body limits (413) or from a bug (500).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from pydantic import ValidationError
from quart import Quart, Request, Response, jsonify
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException

from files.errors import FileSystemError
from store.blob_keys import BlobKeyError

log = logging.getLogger("vaporform.web")


class APIError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


def not_found(what: str = "resource") -> APIError:
    return APIError(404, "not_found", f"{what} not found")


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> Response:
    response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    response.status_code = status
    return response


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower().replace(" ", "_").replace("'", "")


def _validation_details(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, ValidationError):
        return {
            "errors": [
                {"loc": [str(p) for p in e["loc"]], "type": e["type"], "message": e["msg"]}
                for e in exc.errors(include_url=False, include_context=False, include_input=False)
            ]
        }
    return {"reason": str(exc)}


class JSONErrorRequest(Request):
    """A request whose unparseable JSON body is our 400, not werkzeug's generic one."""

    def on_json_loading_failed(self, error: Exception) -> Any:
        raise APIError(400, "invalid_json", f"the body is not valid JSON: {error}")


def register_error_handlers(app: Quart) -> None:
    app.request_class = JSONErrorRequest

    @app.errorhandler(APIError)
    async def _api_error(exc: APIError) -> Response:
        response = error_response(exc.status, exc.code, exc.message, exc.details)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(FileSystemError)
    async def _fs_error(exc: FileSystemError) -> Response:
        return error_response(exc.status, exc.code, exc.message, dict(exc.details))

    @app.errorhandler(RequestSchemaValidationError)
    async def _schema_error(exc: RequestSchemaValidationError) -> Response:
        return error_response(
            400,
            "validation_error",
            "the request body is invalid",
            _validation_details(exc.validation_error),
        )

    @app.errorhandler(ValidationError)
    async def _model_error(exc: ValidationError) -> Response:
        return error_response(
            400, "validation_error", "the request body is invalid", _validation_details(exc)
        )

    @app.errorhandler(UnicodeDecodeError)
    async def _bad_encoding(exc: UnicodeDecodeError) -> Response:
        return error_response(400, "invalid_encoding", "the body is not valid UTF-8")

    @app.errorhandler(HTTPException)
    async def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = {
            400: "bad_request",
            404: "not_found",
            405: "method_not_allowed",
            413: "too_large",
            415: "unsupported_media_type",
            431: "headers_too_large",
        }.get(status, _snake(exc.name or "error"))
        message = exc.description or exc.name or "error"
        response = error_response(status, code, message)
        if status == 405 and (allow := exc.get_response().headers.get("Allow")):
            response.headers["Allow"] = allow
        return response

    @app.errorhandler(BlobKeyError)
    async def _blob_key_error(exc: BlobKeyError) -> Response:
        # The server's configuration, not the request, is at fault: say so, and which key.
        log.error("blob unreadable: %s", exc.message)
        return error_response(
            500, "blob_unreadable", exc.message, {"sha256": exc.sha256, "key_id": exc.kid}
        )

    @app.errorhandler(Exception)
    async def _unhandled(exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "an internal error occurred")
