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
    from cnnedge.train.trainer import TrainOptions, train

    root = tmp_path_factory.mktemp("models") / "seed"
    # batch 8 and no augmentation: enough steps in one epoch for BatchNormalization's statistics
    train(TrainOptions(epochs=1, batch_size=8, augment="none", out=str(root)), log=None)
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
