"""Shared CLI plumbing: turn `CnnedgeError` into a one-line message and its exit code."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from cnnedge.errors import CnnedgeError

F = TypeVar("F", bound=Callable[..., Any])


def exit_on_error(fn: F) -> F:
    """Wrap a command so a `CnnedgeError` prints `error: ...` to stderr and exits with its code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CnnedgeError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]
