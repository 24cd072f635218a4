"""Shared fixtures: one small model package trained once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Quiet TensorFlow's C++ logging in every test process.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def trained_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `models/<name>/` package of the seed architecture trained for one epoch on the default data.

    Treat it as read-only: stages that add files work on a copy (see `package_copy`).
    """
    import keras
    import numpy as np

    from cnnedge import __version__
    from cnnedge.arch import load_arch
    from cnnedge.package import file_record, write_metadata
    from cnnedge.train.data import load_default
    from cnnedge.train.model import build_model, compile_model

    root = tmp_path_factory.mktemp("models") / "seed"
    root.mkdir()
    spec = load_arch("seed")
    data = load_default()
    model = compile_model(build_model(spec, seed=0))
    y_train = keras.utils.to_categorical(data.y_train, 10)
    model.fit(
        data.x_train, y_train, batch_size=8, epochs=1, verbose=0
    )  # batch 8: enough steps for BN statistics
    probs = model.predict(data.x_test, verbose=0)
    accuracy = float(np.mean(probs.argmax(1) == data.y_test))
    model.save(root / "model.keras")
    write_metadata(
        root,
        {
            "name": "seed",
            "cnnedge_version": __version__,
            "architecture": spec.to_dict(),
            "input_shape": list(spec.input_shape),
            "labels": list(data.labels),
            "preprocessing": {"scale": 1 / 255, "layout": "NHWC", "dtype": "float32"},
            "data": {"source": "default", "test_fraction": 0.2, "seed": 0},
            "metrics": {"test_accuracy": accuracy},
            "files": {"model.keras": file_record(root / "model.keras")},
        },
    )
    return root


@pytest.fixture()
def package_copy(trained_package: Path, tmp_path: Path) -> Path:
    """A private copy of `trained_package` that a test may change."""
    import shutil

    dest = tmp_path / trained_package.name
    shutil.copytree(trained_package, dest)
    return dest


@pytest.fixture(scope="session")
def exported_package(trained_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of `trained_package` with `model.onnx` and `model.int8.onnx`, exported and verified.

    Both files are listed in metadata["files"] with size, sha256 and their verification figures.
    Treat it as read-only (session scope); copy it if a test changes files.
    """
    import shutil

    from cnnedge.export.api import export_package

    dest = tmp_path_factory.mktemp("exported") / trained_package.name
    shutil.copytree(trained_package, dest)
    export_package(dest, ["onnx", "onnx-int8"])
    return dest
