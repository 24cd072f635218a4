"""`cnnedge predict`: classify image files with the packaged ONNX model (no TensorFlow)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `predict` command to `app`."""
