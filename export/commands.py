"""CLI commands of the export stage (typer only here; TensorFlow and tf2onnx load inside the command)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the export stage's commands to `app`."""
