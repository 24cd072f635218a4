"""Load a package's ONNX model into onnxruntime, checked against `metadata.json`, and run it.

`cnnedge serve` and `cnnedge predict` both go through `load_model` (the export stage's verifier
opens staged files, not yet listed in metadata.json, with its own runner). It never imports
TensorFlow, tf2onnx or onnx (edge install).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnedge.errors import PackageError, UsageError
from cnnedge.package import Package

VARIANTS = {"fp32": "model.onnx", "int8": "model.int8.onnx"}


def default_threads(reserve: int = 0) -> int:
    """onnxruntime intra-op threads: the cores this process may use, minus `reserve`, 1 to 8.

    Args:
        reserve: cores to leave free (the server keeps one for its event loop).

    Returns:
        The thread count.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    # Past ~8 threads a small CNN spends more time synchronising than computing.
    return max(1, min(cores - reserve, 8))


@dataclass(frozen=True)
class OnnxModel:
    """A package's ONNX model in an onnxruntime session, ready to run.

    Attributes:
        name: the package name (the served model name).
        labels: class labels, index i is output column i.
        input_shape: (H, W, C) of one image.
        package: the loaded `Package` (its metadata gives preprocessing).
        variant: "fp32" or "int8".
        path: the .onnx file.
        threads: onnxruntime intra-op thread count.
    """

    name: str
    labels: list[str]
    input_shape: tuple[int, int, int]
    package: Package
    variant: str
    path: Path
    threads: int
    input_name: str
    output_name: str
    _session: Any = field(repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def metadata(self) -> Any:
        return self.package.metadata

    def run(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch of images.

        Args:
            x: (N, H, W, C) float32, already preprocessed (see metadata["preprocessing"]).

        Returns:
            (N, num_classes) float32 probabilities.
        """
        expected = self.input_shape
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"input has shape {tuple(x.shape)}; this model takes (N, {expected[0]}, "
                f"{expected[1]}, {expected[2]})"
            )
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        out = self._session.run([self.output_name], {self.input_name: x})[0]  # (N, classes)
        return np.asarray(out, dtype=np.float32)


def load_model(
    package_dir: str | Path,
    variant: str = "fp32",
    threads: int | None = None,
    verify: bool = True,
) -> OnnxModel:
    """Load and check a package's ONNX model, then warm it up.

    Args:
        package_dir: the package folder (models/<name>/).
        variant: "fp32" (model.onnx) or "int8" (model.int8.onnx).
        threads: onnxruntime intra-op threads; default `default_threads()`.
        verify: check the file's sha256 against metadata.json.

    Returns:
        The model, warmed up with one batch-1 run.
    """
    if variant not in VARIANTS:
        raise UsageError(f"variant {variant!r} is unknown; use one of {', '.join(VARIANTS)}")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads {threads} must be at least 1 (or omitted for the default)")
    package = Package.load(package_dir)
    filename = VARIANTS[variant]
    if not package.path(filename).is_file():
        raise PackageError(
            f"{package.path(filename)} is missing (variant {variant}); the package lists "
            f"{sorted(package.files) or 'no files'}; run `cnnedge export {package.root}` first"
        )
    path = package.require(filename, verify=verify)
    n_threads = threads if threads is not None else default_threads()
    session = _session(path, n_threads)
    input_name, output_name = _check_signature(session, package, path)
    model = OnnxModel(
        name=package.name,
        labels=package.labels,
        input_shape=package.input_shape,
        package=package,
        variant=variant,
        path=path,
        threads=n_threads,
        input_name=input_name,
        output_name=output_name,
        _session=session,
    )
    _warm_up(model)
    return model


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1  # one sequential graph; parallelism is inside each op
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only; warnings about unused initialisers are noise here
    try:
        return ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph classes
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PackageError(
            f"onnxruntime cannot load {path}: {first}; re-run `cnnedge export`"
        ) from None


def _check_signature(session: Any, package: Package, path: Path) -> tuple[str, str]:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise PackageError(
            f"{path} has {len(inputs)} inputs and {len(outputs)} outputs; a cnnedge model has "
            "exactly one of each (images in, probabilities out); re-run `cnnedge export`"
        )
    inp, out = inputs[0], outputs[0]
    h, w, c = package.input_shape
    want = f"(N, {h}, {w}, {c}) float32"
    shape = list(inp.shape)
    if inp.type != "tensor(float)":
        raise PackageError(
            f"{path} input {inp.name!r} is {inp.type}; metadata.json says {want}; "
            "re-run `cnnedge export`"
        )
    if len(shape) != 4 or [_dim(d) for d in shape[1:]] != [h, w, c]:
        raise PackageError(
            f"{path} input {inp.name!r} has shape {_fmt(shape)}; metadata.json says {want} "
            "(NHWC); the model and its metadata disagree, re-run `cnnedge export`"
        )
    if _dim(shape[0]) != -1:
        raise PackageError(
            f"{path} input {inp.name!r} has a fixed batch of {shape[0]}; cnnedge needs a dynamic "
            "batch dimension for batching; re-run `cnnedge export`"
        )
    out_shape = list(out.shape)
    classes = len(package.labels)
    if len(out_shape) != 2 or _dim(out_shape[1]) not in (classes, -1):
        raise PackageError(
            f"{path} output {out.name!r} has shape {_fmt(out_shape)}; metadata.json lists "
            f"{classes} labels, so it should be (N, {classes}); re-run `cnnedge export`"
        )
    return str(inp.name), str(out.name)


def _dim(d: Any) -> int:
    # onnxruntime reports a symbolic or unknown dimension as a string or None.
    return int(d) if isinstance(d, int) and d >= 0 else -1


def _fmt(shape: list[Any]) -> str:
    return "(" + ", ".join("N" if _dim(d) == -1 else str(d) for d in shape) + ")"


def _warm_up(model: OnnxModel) -> None:
    # The first run allocates arenas and picks kernels; do it before reporting ready.
    x = np.zeros((1, *model.input_shape), dtype=np.float32)  # (1, H, W, C)
    try:
        probs = model.run(x)
    except Exception as exc:
        raise PackageError(
            f"{model.path} failed its warm-up run: {str(exc).splitlines()[0] if str(exc) else exc!r}"
        ) from None
    if probs.shape != (1, model.num_classes):
        raise PackageError(
            f"{model.path} returned shape {probs.shape} for one image; metadata.json lists "
            f"{model.num_classes} labels, so it should be (1, {model.num_classes})"
        )


__all__ = ["VARIANTS", "OnnxModel", "default_threads", "load_model"]
