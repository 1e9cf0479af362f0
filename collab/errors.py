"""The one error type of the collaboration layer; `code` is stable and sent to clients."""

from __future__ import annotations

from typing import Any


class CollabError(Exception):
    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
