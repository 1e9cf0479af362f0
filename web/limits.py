"""Per-route request body limits.

The app-wide MAX_CONTENT_LENGTH is the largest any route accepts (archive import); each route
gets its own smaller limit here, checked before the body is read, so a 60 MiB body sent to a
route that takes 1 MiB is refused at once with 413.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from quart import current_app, request

from web.errors import APIError

F = TypeVar("F", bound=Callable[..., Any])
ATTRIBUTE = "_vaporform_body_limit"


def body_limit(config_field: str) -> Callable[[F], F]:
    """Mark a route as accepting bodies up to the config value named `config_field`."""

    def decorate(func: F) -> F:
        setattr(func, ATTRIBUTE, config_field)
        return func

    return decorate


def too_large(limit: int) -> APIError:
    return APIError(
        413, "too_large", f"the body is larger than {limit} bytes", details={"limit": limit}
    )


def enforce_body_limit(default: int, config: object) -> None:
    view = current_app.view_functions.get(request.endpoint or "")
    field = getattr(view, ATTRIBUTE, None)
    limit = int(getattr(config, field)) if field else default
    if field == "max_file_bytes":
        # JSON carries the file as text or base64: allow for the encoding's growth.
        limit = limit * 4 // 3 + 64 * 1024
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    # Chunked bodies have no length up front: the body object stops reading past the limit.
    body = request.body
    current = getattr(body, "_max_content_length", None)
    if isinstance(current, int):
        body._max_content_length = min(limit, current)
