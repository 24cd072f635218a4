"""HTTP helpers shared by every route: the error type, JSON error bodies, bounded body reads.

Route modules (the V2 protocol routes in `app.py`, the image routes in `images.py`) use:

- `HTTPError(status, message)`: raise it anywhere in a handler; the app renders
  `{"error": message}` with that status.
- `await read_body(request)`: the request body, refused with 413 before reading more than
  `app.state.max_body_bytes` (Content-Length first, then while streaming).
- `get_model(request)`: the `ServedModel` named by the `{model}` path parameter; 404 if unknown,
  503 if the server is shutting down.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from cnnedge.serve.batcher import ServedModel

VERSION = "1"  # each package is served as version "1" of its model


class HTTPError(Exception):
    """An error answered as `{"error": message}` with `status` (and optional extra headers)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A compact JSON response (no NaN: the protocol forbids it)."""
    body = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """The one error shape of this server: `{"error": "<message>"}`."""
    return json_response({"error": message}, status=status, headers=headers)


async def read_body(request: Request, limit: int | None = None) -> bytes:
    """Read the body, refusing with 413 before more than `limit` bytes are read.

    Args:
        request: the Starlette request.
        limit: the maximum body size; default `request.app.state.max_body_bytes`.

    Returns:
        The body bytes.
    """
    limit = int(request.app.state.max_body_bytes if limit is None else limit)
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPError(400, f"Content-Length {declared[:40]!r} is not a non-negative integer")
        if int(declared) > limit:
            raise HTTPError(
                413,
                f"body of {int(declared)} bytes exceeds the limit of {limit} bytes "
                "(--max-body-bytes); send fewer images per request",
            )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPError(
                413,
                f"body exceeds the limit of {limit} bytes (--max-body-bytes); "
                "send fewer images per request",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def get_model(request: Request, ready: bool = True) -> ServedModel:
    """The served model named by the `{model}` (and optional `{version}`) path parameters.

    Args:
        request: a request whose route has a `{model}` parameter.
        ready: also require that the model accepts requests (503 while shutting down).

    Returns:
        The `ServedModel`; raises HTTPError 404 (unknown model or version) or 503 (not ready).
    """
    name = request.path_params.get("model", "")
    models = request.app.state.models
    served = models.get(name)
    if served is None:
        raise HTTPError(
            404, f"model {name[:100]!r} is not served here; this server serves {sorted(models)}"
        )
    version = request.path_params.get("version")
    if version is not None and version != VERSION:
        raise HTTPError(
            404, f"model {name!r} has no version {version[:20]!r}; the only version is {VERSION!r}"
        )
    if ready and (request.app.state.shutting_down or not served.ready):
        raise HTTPError(503, f"model {name!r} is not ready (the server is shutting down)")
    return served


__all__ = ["VERSION", "HTTPError", "error_response", "get_model", "json_response", "read_body"]
