"""Fixtures for the server tests: real `cnnedge serve` processes on free 127.0.0.1 ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from serve_helpers import Server, start_server


@pytest.fixture(scope="session")
def server(exported_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server on the exported package with default settings, shared by the session."""
    srv = start_server(exported_package, tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def reference(exported_package: Path):  # type: ignore[no-untyped-def]
    """The same fp32 model in this process, to compare the server's outputs with."""
    from cnnedge.serve.runtime import load_model

    return load_model(exported_package, "fp32", threads=1)


@pytest.fixture(scope="session")
def digits() -> np.ndarray:
    """64 real test digits, (64, 28, 28, 1) float32 in [0, 1]."""
    from cnnedge.train.data import load_default

    return np.ascontiguousarray(load_default().x_test[:64], dtype=np.float32)
