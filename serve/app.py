"""The ASGI app: Open Inference Protocol (KServe V2) REST routes over dynamically batched models.

For other route modules (`cnnedge.serve.images`), these names are stable:

- `request.app.state.models`: dict of model name -> `cnnedge.serve.batcher.ServedModel`, each with
  `async infer(x)` ((n, H, W, C) float32 -> (n, num_classes) float32, through the dynamic
  batcher; raises `QueueFullError`/`ShuttingDownError`, which the app's exception handlers
  answer with 503, so handlers need not catch them),
  `.name`, `.labels`, `.input_shape` (H, W, C), `.metadata` (the package's metadata.json, e.g.
  `metadata["preprocessing"]`), `.config.max_batch_size`.
- `request.app.state.max_body_bytes`, `request.app.state.metrics` (`ServerMetrics`).
- From `cnnedge.serve.http`: `HTTPError(status, message)` (raise it; rendered as
  `{"error": message}`), `await read_body(request)` (413 before reading past the limit),
  `get_model(request, ready=True)` (the `{model}`/`{version}` path parameters -> ServedModel,
  404/503), `json_response`, `VERSION`.
  A `cnnedge.serve.protocol.ProtocolError` raised in a handler is answered as 400/415 too.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cnnedge import __version__
from cnnedge.serve import images
from cnnedge.serve.batcher import BatchConfig, QueueFullError, ServedModel, ShuttingDownError
from cnnedge.serve.http import (
    VERSION,
    HTTPError,
    error_response,
    get_model,
    json_response,
    read_body,
)
from cnnedge.serve.logs import ACCESS_LOGGER, SERVER_LOGGER
from cnnedge.serve.metrics import ServerMetrics
from cnnedge.serve.openapi import openapi_schema
from cnnedge.serve.protocol import (
    ProtocolError,
    TensorSpec,
    check_media_type,
    encode_infer_response,
    parse_infer_request,
)
from cnnedge.serve.runtime import OnnxModel

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration", "statistics"]
_log = logging.getLogger(SERVER_LOGGER)
_access = logging.getLogger(ACCESS_LOGGER)


@dataclass(frozen=True)
class AppConfig:
    """Server-wide settings (the `cnnedge serve` flags)."""

    batch: BatchConfig = field(default_factory=BatchConfig)
    api_key: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    access_log: bool = True


def create_app(models: Sequence[OnnxModel], config: AppConfig | None = None) -> Starlette:
    """The Starlette app serving `models`.

    Args:
        models: loaded models; their names must be unique.
        config: server settings; default `AppConfig()`.

    Returns:
        The ASGI app (wrapped in the auth, metrics and access-log layer), with `.state` set.
    """
    config = config or AppConfig()
    metrics = ServerMetrics()
    served: dict[str, ServedModel] = {}
    for model in models:
        if model.name in served:
            raise ValueError(f"two packages are named {model.name!r}; rename one in metadata.json")
        served[model.name] = ServedModel(
            model, config.batch, metrics, busy=lambda: int(metrics.inflight.value())
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for s in served.values():
            await s.start()
        yield
        app.state.shutting_down = True
        for s in served.values():
            await s.stop()

    app = Starlette(
        routes=[*_routes(), *images.routes()],
        exception_handlers={
            HTTPError: _on_http_error,
            ProtocolError: _on_protocol_error,
            HTTPException: _on_starlette_error,
            QueueFullError: _on_batcher_refusal,
            ShuttingDownError: _on_batcher_refusal,
            Exception: _on_unexpected,
        },
        middleware=[],
        lifespan=lifespan,
    )
    app.state.models = served
    app.state.metrics = metrics
    app.state.config = config
    app.state.max_body_bytes = config.max_body_bytes
    app.state.shutting_down = False
    app.add_middleware(_Observe, metrics=metrics, api_key=config.api_key, log=config.access_log)
    return app


def _routes() -> list[Route]:
    model = "/v2/models/{model}"
    version = "/v2/models/{model}/versions/{version}"
    return [
        # The hot route first: Starlette tries routes in order.
        Route(model + "/infer", _infer, methods=["POST"]),
        Route("/v2/health/live", _live, methods=["GET"]),
        Route("/v2/health/ready", _ready, methods=["GET"]),
        Route("/v2", _server_metadata, methods=["GET"]),
        Route("/v2/models", _list_models, methods=["GET"]),
        Route("/v2/models/stats", _stats, methods=["GET"]),  # before {model} would take "stats"
        Route(model, _model_metadata, methods=["GET"]),
        Route(version, _model_metadata, methods=["GET"]),
        Route(model + "/ready", _model_ready, methods=["GET"]),
        Route(version + "/ready", _model_ready, methods=["GET"]),
        Route(version + "/infer", _infer, methods=["POST"]),
        Route(model + "/config", _config, methods=["GET"]),
        Route(version + "/config", _config, methods=["GET"]),
        Route(model + "/stats", _stats, methods=["GET"]),
        Route(version + "/stats", _stats, methods=["GET"]),
        Route("/metrics", _metrics, methods=["GET"]),
        Route("/openapi.json", _openapi, methods=["GET"]),
    ]


# --- routes -------------------------------------------------------------------------------


async def _live(request: Request) -> Response:
    return json_response({"live": True})


async def _ready(request: Request) -> Response:
    state = request.app.state
    ready = not state.shutting_down and all(s.ready for s in state.models.values())
    if not ready:
        return error_response(503, "not ready: the server is starting or shutting down")
    return json_response({"ready": True})


async def _server_metadata(request: Request) -> Response:
    return json_response({"name": "cnnedge", "version": __version__, "extensions": EXTENSIONS})


async def _list_models(request: Request) -> Response:
    return json_response({"models": sorted(request.app.state.models)})


def _specs(served: ServedModel) -> tuple[TensorSpec, TensorSpec]:
    m = served.model
    h, w, c = m.input_shape
    return (
        TensorSpec(m.input_name, "FP32", (-1, h, w, c)),
        TensorSpec(m.output_name, "FP32", (-1, m.num_classes)),
    )


async def _model_metadata(request: Request) -> Response:
    served = get_model(request, ready=False)
    inp, out = _specs(served)
    return json_response(
        {
            "name": served.name,
            "versions": [VERSION],
            "platform": "onnxruntime_onnx",
            "inputs": [inp.to_dict()],
            "outputs": [out.to_dict()],
        }
    )


async def _model_ready(request: Request) -> Response:
    served = get_model(request, ready=False)
    if request.app.state.shutting_down or not served.ready:
        return error_response(503, f"model {served.name!r} is not ready")
    return json_response({"name": served.name, "ready": True})


async def _config(request: Request) -> Response:
    served = get_model(request, ready=False)
    inp, out = _specs(served)
    batch = served.config
    return json_response(
        {
            "name": served.name,
            "platform": "onnxruntime_onnx",
            "backend": "onnxruntime",
            "max_batch_size": batch.max_batch_size,
            "input": [
                {
                    "name": inp.name,
                    "data_type": "TYPE_FP32",
                    "format": "FORMAT_NHWC",
                    "dims": list(inp.shape[1:]),
                }
            ],
            "output": [{"name": out.name, "data_type": "TYPE_FP32", "dims": list(out.shape[1:])}],
            "dynamic_batching": {
                "max_queue_delay_microseconds": batch.max_queue_delay_us,
                "default_queue_policy": {"max_queue_size": batch.max_queue},
            },
            "instance_group": [{"count": 1, "kind": "KIND_CPU"}],
            "parameters": {
                "variant": {"string_value": served.model.variant},
                "intra_op_thread_count": {"string_value": str(served.model.threads)},
            },
        }
    )


async def _stats(request: Request) -> Response:
    models = request.app.state.models
    chosen = (
        [get_model(request, ready=False)]
        if "model" in request.path_params
        else list(models.values())
    )
    return json_response({"model_stats": [_model_stats(s) for s in chosen]})


def _model_stats(served: ServedModel) -> dict[str, Any]:
    s = served.stats

    def duration(count: int, ns: int) -> dict[str, int]:
        return {"count": count, "ns": ns}

    return {
        "name": served.name,
        "version": VERSION,
        "last_inference": s.last_inference_ms,
        "inference_count": s.inference_count,
        "execution_count": s.execution_count,
        "inference_stats": {
            "success": duration(s.success_count, s.success_ns),
            "fail": duration(s.fail_count, s.fail_ns),
            "queue": duration(s.success_count + s.fail_count, s.queue_ns),
            "compute_infer": duration(s.execution_count, s.compute_ns),
        },
        "batch_stats": [
            {"batch_size": size, "compute_infer": duration(count, ns)}
            for size, (count, ns) in sorted(s.batches.items())
        ],
    }


async def _infer(request: Request) -> Response:
    served = get_model(request)
    metrics: ServerMetrics = request.app.state.metrics
    try:
        check_media_type(
            request.headers.get("content-type"), request.headers.get("content-encoding")
        )
        body = await read_body(request)
        inp, out = _specs(served)
        parsed = parse_infer_request(
            body,
            request.headers.get("inference-header-content-length"),
            inp,
            [out.name],
            served.config.max_batch_size,
        )
        probs = await served.infer(parsed.x)  # (N, num_classes)
        payload, headers = encode_infer_response(
            served.name, VERSION, parsed, {out.name: probs}, served.labels
        )
    except Exception:
        metrics.inferences.inc(model=served.name, outcome="error")
        raise
    metrics.inferences.inc(model=served.name, outcome="success")
    return Response(payload, headers=headers)


async def _metrics(request: Request) -> Response:
    text = request.app.state.metrics.render()
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


async def _openapi(request: Request) -> Response:
    return json_response(openapi_schema(sorted(request.app.state.models), __version__))


# --- errors -------------------------------------------------------------------------------


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPError)  # registered for HTTPError only
    return error_response(exc.status, exc.message, exc.headers)


async def _on_protocol_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProtocolError)
    return error_response(exc.status, exc.message)


async def _on_batcher_refusal(request: Request, exc: Exception) -> Response:
    # Every route that infers (V2 and images) gets the same 503 for a full queue or a drain.
    headers = {"retry-after": "1"} if isinstance(exc, QueueFullError) else None
    return error_response(503, str(exc), headers)


async def _on_starlette_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no route {request.url.path[:200]!r}; see /openapi.json for the API"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = (
            f"method {request.method} is not allowed on {request.url.path[:200]!r}; use {allowed}"
        )
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, message, dict(exc.headers or {}))


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    # The trace goes to the server log; the client gets no internals.
    _log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal server error; the server log has the details")


# --- auth, metrics and access log -----------------------------------------------------------


class _Observe:
    """Pure ASGI layer: API-key check, in-flight gauge, per-route counts and latency, access log."""

    def __init__(
        self, app: ASGIApp, metrics: ServerMetrics, api_key: str | None, log: bool
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.key = api_key.encode() if api_key else None
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500, 0]  # code, bytes sent

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body":
                status[1] += len(message.get("body", b""))
            await send(message)

        self.metrics.inflight.inc()
        try:
            needs_key = self.key is not None and not _is_public(scope["path"])
            if needs_key and not self._authorised(scope):
                response = error_response(
                    401,
                    "missing or wrong API key; send the header Authorization: Bearer <key>",
                    {"www-authenticate": "Bearer"},
                )
                await response(scope, receive, send_wrapper)
                return
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.inflight.dec()
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            code = str(status[0])
            self.metrics.requests.inc(route=path, method=scope["method"], code=code)
            self.metrics.latency.observe(elapsed, route=path)
            if self.log:
                self._access_log(scope, status[0], status[1], elapsed)

    def _authorised(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                key = self.key or b""
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), key)
        return False

    def _access_log(self, scope: Scope, code: int, sent: int, elapsed: float) -> None:
        client = scope.get("client")
        record = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
            "client": f"{client[0]}:{client[1]}" if client else None,
            "method": scope["method"],
            "path": scope["path"][:200],
            "status": code,
            "bytes": sent,
            "ms": round(elapsed * 1000, 3),
        }
        _access.info(json.dumps(record, separators=(",", ":")))


def _is_public(path: str) -> bool:
    """Health checks and the page's own files need no key; the page asks for one on a 401."""
    return path.startswith(("/v2/health/", "/static/")) or path == "/"


__all__ = ["DEFAULT_MAX_BODY_BYTES", "VERSION", "AppConfig", "create_app"]
