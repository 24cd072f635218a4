"""Errors that reach the user: each carries the exit code the CLI returns."""

from __future__ import annotations


class CnnedgeError(Exception):
    """A failure the user can act on; the message says what, why and what to do."""

    exit_code = 1


class UsageError(CnnedgeError):
    """Bad input from the user (an option, a file, an architecture): exit code 2."""

    exit_code = 2


class ArchitectureError(UsageError):
    """An architecture file that cannot be parsed or validated."""


class ShapeError(UsageError):
    """An input shape that a layer stack cannot accept (a feature map collapses)."""


class DataError(UsageError):
    """Training or test data that is missing, malformed or inconsistent."""


class PackageError(CnnedgeError):
    """A model package folder that is missing files or fails its hash checks."""
