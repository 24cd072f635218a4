"""CLI commands of the training stage (typer only here; TensorFlow loads inside the command)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the training stage's commands to `app`."""
