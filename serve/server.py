"""Run the app on uvicorn: load and check the models first, print the URL, drain on SIGTERM.

Start-up order: every model is loaded, hash-checked and warmed up before the socket is bound,
so a broken package exits 1 with its message and a bound server is ready at once. On SIGTERM
readiness turns 503, the listening socket closes, requests in flight finish, and the process
exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from cnnedge.errors import UsageError
from cnnedge.serve.app import DEFAULT_MAX_BODY_BYTES, AppConfig, create_app
from cnnedge.serve.batcher import BatchConfig
from cnnedge.serve.logs import configure_logging
from cnnedge.serve.runtime import OnnxModel, default_threads, load_model

_CONFIG_ENV = "CNNEDGE_SERVE_OPTIONS"  # hands the options to worker processes (--workers > 1)
GRACEFUL_SHUTDOWN_S = 30


@dataclass(frozen=True)
class ServeOptions:
    """Everything `cnnedge serve` was asked for."""

    model_dirs: tuple[str, ...] = ("models/seed",)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    variant: str = "fp32"
    max_batch_size: int = 32
    max_queue_delay_us: int = 500
    max_queue: int = 256
    threads: int | None = None
    api_key: str | None = field(default=None, repr=False)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    access_log: bool = True

    def check(self) -> None:
        """Refuse impossible settings with a message naming the flag."""
        rules = [
            (self.workers >= 1, f"--workers {self.workers} must be at least 1"),
            (0 <= self.port <= 65535, f"--port {self.port} must be 0-65535 (0 picks a free port)"),
            (self.max_batch_size >= 1, f"--max-batch-size {self.max_batch_size} must be >= 1"),
            (
                self.max_queue_delay_us >= 0,
                f"--max-queue-delay-us {self.max_queue_delay_us} must be >= 0",
            ),
            (self.max_queue >= 1, f"--max-queue {self.max_queue} must be at least 1"),
            (
                self.max_body_bytes >= 1024,
                f"--max-body-bytes {self.max_body_bytes} must be >= 1024",
            ),
            (
                self.api_key is None or len(self.api_key) >= 8,
                "--api-key must be at least 8 characters",
            ),
            (self.workers == 1 or self.port != 0, "--port 0 works with --workers 1 only"),
        ]
        for ok, message in rules:
            if not ok:
                raise UsageError(message)

    def app_config(self) -> AppConfig:
        return AppConfig(
            batch=BatchConfig(self.max_batch_size, self.max_queue_delay_us, self.max_queue),
            api_key=self.api_key,
            max_body_bytes=self.max_body_bytes,
            access_log=self.access_log,
        )


def load_models(options: ServeOptions) -> list[OnnxModel]:
    """Load, hash-check and warm up every package (raises PackageError, exit 1)."""
    models = [load_model(d, options.variant, options.threads) for d in options.model_dirs]
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise UsageError(f"packages share a name ({names}); each served model needs its own name")
    return models


def serve(options: ServeOptions) -> int:
    """Load the models and serve until SIGTERM or Ctrl-C.

    Args:
        options: the checked options.

    Returns:
        The process exit code (0 after a graceful shutdown).
    """
    options.check()
    if options.threads is None:
        # One core stays with the event loop (parsing, batching, responses); with several
        # workers each has its own onnxruntime pool, so they share the cores.
        threads = max(1, default_threads(reserve=1) // options.workers)
        options = replace(options, threads=threads)
    configure_logging()
    models = load_models(options)  # before binding: a broken package never looks ready
    if options.workers > 1:
        os.environ[_CONFIG_ENV] = json.dumps(asdict(options))
        _announce(options, models, options.port)
        uvicorn.run(
            "cnnedge.serve.server:worker_app",
            factory=True,
            host=options.host,
            port=options.port,
            workers=options.workers,
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        return 0
    app = create_app(models, options.app_config())
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        access_log=False,  # ours is structured, see app._Observe
        # No proxy in front by default: the socket's peer is the client, and one layer less
        # per request is measurable at this size.
        proxy_headers=False,
        log_config=None,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    server = _Server(config, app=app, on_started=lambda port: _announce(options, models, port))
    # uvicorn re-raises a caught signal after its graceful shutdown; these handlers make that
    # re-raise a no-op, so a drained server exits 0 instead of dying of SIGTERM.
    signal.signal(signal.SIGTERM, _ignore)
    signal.signal(signal.SIGINT, _ignore)
    server.run()
    return 0 if server.started else 1


def worker_app() -> Any:
    """App factory for uvicorn worker processes (`--workers > 1`)."""
    options = ServeOptions(**{**json.loads(os.environ[_CONFIG_ENV]), "workers": 1})
    options = ServeOptions(**{**asdict(options), "model_dirs": tuple(options.model_dirs)})
    configure_logging()
    return create_app(load_models(options), options.app_config())


def _ignore(signum: int, frame: Any) -> None:
    return None


def _announce(options: ServeOptions, models: list[OnnxModel], port: int) -> None:
    host = f"[{options.host}]" if ":" in options.host else options.host
    url = f"http://{host}:{port}"
    for m in models:
        print(
            f"serving {m.name} ({m.variant}, {Path(m.path).name}, {m.threads} onnxruntime "
            f"threads) from {m.package.root}",
            flush=True,
        )
    print(
        f"listening on {url}  (ready: {url}/v2/health/ready, infer: "
        f"{url}/v2/models/{models[0].name}/infer)",
        flush=True,
    )
    if options.host not in ("127.0.0.1", "localhost", "::1") and not options.api_key:
        print("warning: listening beyond localhost without --api-key", file=sys.stderr, flush=True)


class _Server(uvicorn.Server):
    """uvicorn.Server that flips readiness to 503 on SIGTERM and reports the bound port."""

    def __init__(self, config: uvicorn.Config, app: Any, on_started: Callable[[int], None]) -> None:
        super().__init__(config)
        self._app = app
        self._on_started = on_started

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._app.state.shutting_down = True  # readiness 503 from now on
        super().handle_exit(sig, frame)

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started and self.servers:
            self._on_started(self.servers[0].sockets[0].getsockname()[1])


__all__ = ["ServeOptions", "load_models", "serve", "worker_app"]
