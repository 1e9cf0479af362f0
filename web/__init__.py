"""The API process: a Quart app served by hypercorn (`create_app(config)`)."""

from web.app import create_app

__all__ = ["create_app"]
