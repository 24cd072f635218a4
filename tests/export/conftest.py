"""Export-stage fixtures: one package exported to every format once per session, and its test split."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cnnedge.package import Package


@pytest.fixture(scope="session")
def all_exported(trained_package: Path, tmp_path_factory: pytest.TempPathFactory):
    """(package path, export results) for a copy of `trained_package` exported with `all`.

    Read-only: tests that change files copy it first.
    """
    from cnnedge.export.api import export_package

    dest = tmp_path_factory.mktemp("all-formats") / trained_package.name
    shutil.copytree(trained_package, dest)
    results = export_package(dest, ["all"])
    return dest, {r.format: r for r in results}


@pytest.fixture(scope="session")
def held_out(trained_package: Path) -> tuple[np.ndarray, np.ndarray]:
    """The package's held-out test images (N, 28, 28, 1) and labels (N,)."""
    from cnnedge.train.data import load_from_metadata

    pkg = Package.load(trained_package)
    data = load_from_metadata(pkg.metadata["data"], pkg.input_shape)
    return data.x_test, data.y_test


@pytest.fixture(scope="session")
def keras_probs(trained_package: Path, held_out) -> np.ndarray:
    """Keras' own probabilities (N, 10) on the held-out images: the reference of every parity test."""
    import keras

    model = keras.models.load_model(trained_package / "model.keras", safe_mode=True)
    return model.predict(held_out[0], batch_size=100, verbose=0)
