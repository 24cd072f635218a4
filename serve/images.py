"""Image routes of the server: the classify endpoint and the draw-a-digit page."""

from __future__ import annotations

from typing import Any


def routes() -> list[Any]:
    """Starlette routes for images and the web page, added to the app by `create_app`."""
    return []
