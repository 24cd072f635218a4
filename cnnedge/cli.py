"""The `cnnedge` command line: a typer app whose stage commands import their frameworks lazily.

Each stage folder has a light `commands` module (typer and the core only) with `register(app)`;
TensorFlow, tf2onnx and onnxruntime are imported inside the command bodies, so `cnnedge --help`
and `cnnedge check` start fast and work on an edge install.
"""

from __future__ import annotations

import os

import typer

from cnnedge import __version__
from cnnedge.console import exit_on_error


def build_app() -> typer.Typer:
    """Create the CLI app with every stage's commands registered."""
    from cnnedge.export import commands as export_commands
    from cnnedge.serve import commands as serve_commands
    from cnnedge.serve import predict as predict_commands
    from cnnedge.train import commands as train_commands

    app = typer.Typer(
        name="cnnedge",
        help="Train the seed digit CNN, export it to ONNX/TFLite, and serve it with onnxruntime.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.callback(invoke_without_command=True)(_root)
    app.command("check")(check)
    train_commands.register(app)
    export_commands.register(app)
    serve_commands.register(app)
    predict_commands.register(app)
    return app


def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        typer.echo(f"cnnedge {__version__}")
        raise typer.Exit(0)


@exit_on_error
def check(
    arch: str = typer.Option("seed", "--arch", help="Preset name or architecture TOML file."),
    input_shape: str = typer.Option(
        None, "--input-shape", help="HxWxC to check instead of the architecture's own."
    ),
    num_classes: int = typer.Option(None, "--num-classes", help="Override the class count."),
) -> None:
    """Print every layer's output shape and the parameter count; exit 2 if a map collapses."""
    from cnnedge.arch import load_arch, parse_shape
    from cnnedge.shapes import check_classifier, format_table, min_input_side

    spec = load_arch(arch)
    if num_classes is not None:
        spec = spec.with_num_classes(num_classes)
    shape = parse_shape(input_shape) if input_shape else spec.input_shape
    rows = check_classifier(spec, shape)
    typer.echo(f"architecture {spec.name} ({spec.source}), input {'x'.join(map(str, shape))}")
    typer.echo(format_table(rows))
    side = min_input_side(spec, channels=shape[2])
    typer.echo(f"smallest square input: {side}x{side}")


def main() -> None:
    """Console-script entry point."""
    # TensorFlow's C++ log (CUDA probes on a CPU machine, oneDNN notes) buries the progress
    # lines; a user who wants it sets TF_CPP_MIN_LOG_LEVEL=0.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    build_app()()


__all__ = ["build_app", "main"]
