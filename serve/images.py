"""Image routes of the server: the classify endpoint and the draw-a-digit page.

    POST /v1/models/{model}:classify   raw PNG/JPEG body (any Content-Type but multipart: the magic
                                       bytes decide), or multipart/form-data with one or more
                                       file parts -> {"predictions": [{"label", "confidence",
                                       "top_k"}, ...]}, one per image, in upload order.
         ?top_k=3                      how many classes each prediction lists
         ?debug=1                      also "probabilities" (all classes) and "input_image", the
                                       model's input as a data:image/png;base64 URL
         ?invert=auto|always|never     override the package's inversion rule
    GET  /v1/models                    {"models": [{"name", "labels", "input_shape"}]}, for the page
    GET  /                             the page; GET /static/<file> its CSS and JavaScript

Images are preprocessed by `cnnedge.preprocess` with each package's `metadata["preprocessing"]`
(in a worker thread: decoding a photo takes milliseconds) and then go through the model's dynamic
batcher like V2 requests. Errors have the V2 shape `{"error": msg}`: 413 for a body over
`--max-body-bytes` or an image over the pixel limit, 415 for a format or media type outside the
allow-list, 400 for undecodable bytes.

Multipart bodies are parsed with the standard library's `email` parser (no python-multipart
dependency); the body is size-limited before parsing.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import re
from email import policy
from email.parser import BytesParser
from importlib import resources
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cnnedge.preprocess import (
    INVERT_CHOICES,
    ImageError,
    PreprocessConfig,
    preprocess_image,
    to_png,
)
from cnnedge.serve.http import HTTPError, get_model, json_response, read_body
from cnnedge.serve.predict import prediction

_STATIC_NAME = re.compile(r"^[a-z0-9_-]+\.(html|css|js)$")
_MEDIA_TYPES = {"html": "text/html", "css": "text/css", "js": "text/javascript"}
# The page loads only its own files; images it shows are data: or blob: URLs.
_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_MAX_TOP_K = 100


@dataclasses.dataclass(frozen=True)
class _Upload:
    """One image of a request: a display name (for errors) and its bytes."""

    name: str
    data: bytes


def routes() -> list[Any]:
    """Starlette routes for images and the web page, added to the app by `create_app`."""
    return [
        Route("/v1/models/{model}:classify", classify, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/", page, methods=["GET"]),
        Route("/static/{name}", static_file, methods=["GET"]),
    ]


async def classify(request: Request) -> Response:
    """Classify the uploaded image(s) with the model named in the path."""
    served = get_model(request)
    k = _int_param(request, "top_k", 3, 1, _MAX_TOP_K)
    debug = request.query_params.get("debug", "0") not in ("", "0", "false", "no")
    config = PreprocessConfig.from_metadata(served.metadata)
    invert = request.query_params.get("invert")
    if invert is not None:
        if invert not in INVERT_CHOICES:
            raise HTTPError(400, f"invert={invert[:20]!r} must be one of {list(INVERT_CHOICES)}")
        config = dataclasses.replace(config, invert=invert)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise HTTPError(
            415, f"Content-Encoding {encoding[:40]!r} is not supported; send the image as is"
        )
    body = await read_body(request)
    # Parsing a large form and decoding photos take milliseconds: keep them off the event loop.
    x = await run_in_threadpool(
        _images_of, request.headers.get("content-type", ""), body, config
    )  # (N, H, W, C)
    probs = await _infer(served, x)  # (N, classes)
    predictions = []
    for i, row in enumerate(probs):
        item = prediction(row, served.labels, k)
        if debug:
            item["probabilities"] = [round(float(p), 6) for p in row]
            item["input_image"] = "data:image/png;base64," + base64.b64encode(to_png(x[i])).decode(
                "ascii"
            )
        predictions.append(item)
    return json_response({"model_name": served.name, "predictions": predictions})


async def list_models(request: Request) -> Response:
    """The served models, so the page can pick one and label its chart."""
    models = request.app.state.models
    return json_response(
        {
            "models": [
                {"name": m.name, "labels": m.labels, "input_shape": list(m.input_shape)}
                for m in models.values()
            ]
        }
    )


async def page(request: Request) -> Response:
    """The draw-a-digit page."""
    return _static("index.html")


async def static_file(request: Request) -> Response:
    """A file of the page (CSS, JavaScript) from the package's `static` folder."""
    return _static(request.path_params["name"])


def split_uploads(content_type: str, body: bytes) -> list[_Upload]:
    """The images of a request body: the body itself, or every file part of a multipart form.

    Args:
        content_type: the request's Content-Type header.
        body: the (size-limited) body.

    Returns:
        One `_Upload` per image, in order.
    """
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        return _multipart_files(content_type, body)
    if media.startswith("multipart/"):
        raise HTTPError(415, f"Content-Type {media} is not supported; use multipart/form-data")
    # Any other Content-Type (curl sends x-www-form-urlencoded by default) is a raw body whose
    # format the magic bytes decide, so a mislabelled PNG still works and a GIF is still refused.
    return [_Upload("body", body)]


def _multipart_files(content_type: str, body: bytes) -> list[_Upload]:
    if "boundary=" not in content_type:
        raise HTTPError(
            400, "multipart/form-data without a boundary parameter; let the client set it"
        )
    # The email parser needs the header line in front of the body; HTTP policy keeps CRLF intact.
    header = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n"
    message = BytesParser(policy=policy.HTTP).parsebytes(header + body)
    if not message.is_multipart():
        raise HTTPError(400, "the multipart/form-data body could not be parsed; check the boundary")
    uploads = []
    for index, part in enumerate(message.iter_parts()):
        disposition = part.get("content-disposition", "")
        filename = part.get_param("filename", header="content-disposition")
        if "form-data" not in str(disposition).lower() or filename is None:
            continue  # a plain form field, not a file
        data = part.get_payload(decode=True)  # bytes for a non-multipart part
        if not isinstance(data, bytes):
            raise HTTPError(400, f"multipart part {index} nests another multipart body; send files")
        uploads.append(_Upload(str(filename) or f"part {index}", data))
    if not uploads:
        raise HTTPError(
            400,
            "the multipart/form-data body has no file parts; send each image as a file field "
            '(Content-Disposition: form-data; name="file"; filename="digit.png")',
        )
    return uploads


def _images_of(content_type: str, body: bytes, config: PreprocessConfig) -> np.ndarray:
    uploads = split_uploads(content_type, body)
    images = []
    for upload in uploads:
        try:
            images.append(preprocess_image(upload.data, config))
        except ImageError as exc:
            prefix = f"{upload.name}: " if len(uploads) > 1 or upload.name != "body" else ""
            raise HTTPError(exc.http_status, prefix + str(exc)) from None
    return np.stack(images).astype(np.float32)  # (N, H, W, C)


async def _infer(served: Any, x: np.ndarray) -> np.ndarray:
    # A form may hold more images than one batch; each slice goes through the batcher.
    step = int(served.config.max_batch_size)
    parts = await asyncio.gather(*(served.infer(x[i : i + step]) for i in range(0, len(x), step)))
    return np.concatenate(parts)


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise HTTPError(400, f"{name}={raw[:20]!r} must be an integer from {low} to {high}")
    return int(raw)


def _static(name: str) -> Response:
    if not _STATIC_NAME.match(name):
        raise HTTPError(404, f"no page file {name[:60]!r}; the page is at /")
    source = resources.files("cnnedge.serve.static").joinpath(name)
    if not source.is_file():
        raise HTTPError(404, f"no page file {name!r}; the page is at /")
    kind = name.rsplit(".", 1)[1]
    return Response(
        source.read_bytes(),
        media_type=_MEDIA_TYPES[kind],
        headers={"Cache-Control": "no-cache", "Content-Security-Policy": _CSP},
    )
