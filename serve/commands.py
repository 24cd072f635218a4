"""CLI commands of the serving stage (typer only here; onnxruntime loads inside the command)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the serving stage's commands to `app`."""
