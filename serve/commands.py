"""CLI commands of the serving stage (typer only here; onnxruntime loads inside the command)."""

from __future__ import annotations

import os

import typer

from cnnedge.console import exit_on_error

API_KEY_ENV = "CNNEDGE_API_KEY"


def register(app: typer.Typer) -> None:
    """Add the serving stage's commands to `app`."""
    app.command("serve")(serve)


@exit_on_error
def serve(
    model_dirs: list[str] = typer.Argument(  # noqa: B008
        None, help="Model package folder(s) to serve; default models/seed.", show_default=False
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind (localhost only by default)."
    ),
    port: int = typer.Option(8000, "--port", help="TCP port; 0 picks a free one (printed)."),
    workers: int = typer.Option(
        1, "--workers", help="Server processes, each with its own model copy."
    ),
    variant: str = typer.Option(
        "fp32", "--variant", help="fp32 (model.onnx) or int8 (model.int8.onnx)."
    ),
    max_batch_size: int = typer.Option(
        32, "--max-batch-size", help="Most images per onnxruntime call and per request."
    ),
    max_queue_delay_us: int = typer.Option(
        500, "--max-queue-delay-us", help="Longest wait to fill a batch, in microseconds."
    ),
    max_queue: int = typer.Option(256, "--max-queue", help="Queued requests per model before 503."),
    threads: int = typer.Option(
        None,
        "--threads",
        help="onnxruntime intra-op threads; default: usable cores minus one (for the event loop), 1 to 8.",
        show_default=False,
    ),
    api_key: str = typer.Option(
        None,
        "--api-key",
        help=f"Require Authorization: Bearer <key> (except health); or set {API_KEY_ENV}.",
        show_default=False,
    ),
    max_body_bytes: int = typer.Option(
        4 * 1024 * 1024, "--max-body-bytes", help="Largest request body; bigger ones get 413."
    ),
    access_log: bool = typer.Option(
        True, "--access-log/--no-access-log", help="One JSON line per request on stderr."
    ),
) -> None:
    """Serve a model package over the Open Inference Protocol (KServe V2 / Triton HTTP)."""
    from cnnedge.serve.server import ServeOptions
    from cnnedge.serve.server import serve as run_server

    options = ServeOptions(
        model_dirs=tuple(model_dirs or ["models/seed"]),
        host=host,
        port=port,
        workers=workers,
        variant=variant,
        max_batch_size=max_batch_size,
        max_queue_delay_us=max_queue_delay_us,
        max_queue=max_queue,
        threads=threads,
        api_key=api_key or os.environ.get(API_KEY_ENV) or None,
        max_body_bytes=max_body_bytes,
        access_log=access_log,
    )
    raise typer.Exit(run_server(options))
