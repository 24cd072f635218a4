"""`export_package`: check shapes, convert, verify every artifact against Keras, then commit files.

Every file is staged under a temporary name beside its target (`cnnedge.package.atomic_path`) and
verified there; only when every requested format has passed are the files renamed into place, and
`metadata.json` is written last. A failure or an interrupt at any point leaves the previous files
byte-identical and removes the staged ones.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnedge.errors import PackageError, UsageError
from cnnedge.export.formats import ExportFormat, parse_formats, triton_model_name
from cnnedge.export.shapecheck import ShapePlan, plan_shapes
from cnnedge.export.verify import Verification, measure, require_passed
from cnnedge.package import Package, atomic_path, file_record, library_versions, update_metadata

MIN_OPSET, MAX_OPSET = 13, 18  # what tf2onnx 1.17 converts to
CALIBRATION_IMAGES = 300
TRITON_MAX_BATCH = 64


@dataclass(frozen=True)
class ExportResult:
    """One written format: its files (relative to the package), total size and verification."""

    format: str
    files: tuple[str, ...]
    size: int
    verification: Verification
    seconds: float


@dataclass(frozen=True)
class _Inputs:
    """What every format's conversion and verification share."""

    model: Any
    plan: ShapePlan
    calibration: np.ndarray  # (N, H, W, C) float32, from the training split
    x_test: np.ndarray  # (N, H, W, C) float32, held out
    y_test: np.ndarray  # (N,) int64
    reference: np.ndarray  # (N, K) Keras probabilities on x_test


def export_package(
    root: str | Path,
    formats: Iterable[str] | None = None,
    opset: int = 17,
    input_shape: Sequence[int] | None = None,
    calibration_images: np.ndarray | None = None,
    calibration_size: int = CALIBRATION_IMAGES,
) -> list[ExportResult]:
    """Export a trained package to the given formats, verified against Keras.

    Args:
        root: the package folder (with model.keras and metadata.json).
        formats: format names or "all"; None means onnx and tflite.
        opset: the ONNX opset (13-18).
        input_shape: (H, W, C) to export for; None keeps the trained shape.
        calibration_images: override the quantisation calibration set (N, H, W, C) in [0, 1];
            by default the first `calibration_size` training images of the package's data.
        calibration_size: how many training images calibrate the int8 formats.

    Returns:
        One result per format, in canonical format order.
    """
    root = Path(root)
    fmts = parse_formats(formats)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UsageError(
            f"opset {opset} is outside what tf2onnx converts to ({MIN_OPSET}-{MAX_OPSET}); "
            "use the default 17"
        )
    pkg = Package.load(root)
    plan = plan_shapes(pkg.metadata, input_shape)  # before anything heavy is imported
    inputs = _prepare(pkg, plan, calibration_images, calibration_size)
    results: list[ExportResult] = []
    records: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        created = _missing_dirs(root, fmts, pkg.name)
        stack.callback(_remove_empty, created)  # runs last; after success they hold files
        float_onnx: Path | None = None
        for fmt in fmts:
            start = time.perf_counter()
            staged, verification = _stage(stack, root, fmt, pkg, inputs, opset, float_onnx)
            if fmt.name == "onnx":
                float_onnx = staged[fmt.filename][0]
            require_passed(fmt, verification)
            size = 0
            for rel, (tmp, extra) in staged.items():
                records[rel] = file_record(tmp, **extra)
                size += records[rel]["size"]
            results.append(
                ExportResult(
                    fmt.name, tuple(staged), size, verification, time.perf_counter() - start
                )
            )
        # Leaving the stack renames every staged file into place (all formats passed).
    update_metadata(root, lambda meta: _record(meta, records, plan, opset, inputs, fmts))
    return results


def _prepare(
    pkg: Package, plan: ShapePlan, calibration: np.ndarray | None, calibration_size: int
) -> _Inputs:
    import keras

    from cnnedge.export.runners import KerasRunner
    from cnnedge.train.data import load_from_metadata

    model_path = pkg.require("model.keras")
    try:
        # safe_mode refuses lambda layers and other pickled code inside the archive.
        model = keras.models.load_model(model_path, safe_mode=True)
    except Exception as exc:
        raise PackageError(
            f"{model_path} cannot be loaded with safe_mode=True ({type(exc).__name__}: "
            f"{str(exc)[:300]}); re-run `cnnedge train` to write a plain Keras model"
        ) from None
    model_shape = tuple(int(d) for d in model.input_shape[1:])
    if model_shape != plan.trained_shape:
        raise PackageError(
            f"{model_path} takes input {model_shape}, metadata.json says {plan.trained_shape}; "
            "the package is inconsistent, re-run `cnnedge train`"
        )
    data = load_from_metadata(pkg.metadata.get("data", {}), plan.trained_shape)
    x_train, x_test = data.x_train, data.x_test
    if plan.reshaped:
        model = _rebuild(model, plan)
        x_train, x_test = _resize(x_train, plan.export_shape), _resize(x_test, plan.export_shape)
    if calibration is None:
        calibration = x_train[:calibration_size]
    calibration = np.asarray(calibration, dtype=np.float32)
    if calibration.ndim != 4 or calibration.shape[1:] != plan.export_shape:
        raise UsageError(
            f"calibration images have shape {calibration.shape}; they must be "
            f"(N, {', '.join(map(str, plan.export_shape))})"
        )
    reference = KerasRunner(model, plan.export_shape).predict(x_test)
    return _Inputs(model, plan, calibration, x_test, data.y_test, reference)


def _rebuild(model: Any, plan: ShapePlan) -> Any:
    """The same weights in a model built for the export shape (the plan checked they fit)."""
    from cnnedge.train.model import build_model

    reshaped = build_model(plan.spec.with_input_shape(plan.export_shape))
    reshaped.set_weights(model.get_weights())
    return reshaped


def _resize(x: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    import tensorflow as tf

    return tf.image.resize(x, shape[:2]).numpy().astype(np.float32)  # (N, H, W, C)


def _stage(
    stack: contextlib.ExitStack,
    root: Path,
    fmt: ExportFormat,
    pkg: Package,
    inputs: _Inputs,
    opset: int,
    float_onnx: Path | None,
) -> tuple[dict[str, tuple[Path, dict[str, Any]]], Verification]:
    """Write one format's files to staged temporaries beside their targets and verify them.

    Returns:
        ({relative path: (temp path, record fields)}, the verification).
    """
    from cnnedge.export.runners import open_runner

    common = {"format": fmt.name, "input_shape": list(inputs.plan.export_shape)}
    if fmt.name == "onnx":
        staged, check = _stage_onnx(stack, root / fmt.filename, inputs, opset)
    elif fmt.name in ("onnx-int8", "triton"):
        source = float_onnx or _scratch_onnx(stack, inputs, opset)
        if fmt.name == "onnx-int8":
            staged, check = _stage_onnx_int8(stack, root / fmt.filename, inputs, source)
        else:
            staged, check = _stage_triton(stack, root, pkg, inputs, source)
        for extra in staged.values():
            extra[1]["opset"] = opset
    else:
        staged, check = _stage_tflite(stack, root / fmt.filename, fmt, inputs)
    probs = open_runner(fmt.runtime, check).predict(inputs.x_test)
    verification = measure(fmt, inputs.reference, probs, inputs.y_test)
    records = {
        str(rel): (tmp, {**common, **extra, "verification": verification.to_dict()})
        for rel, (tmp, extra) in staged.items()
    }
    return records, verification


_Staged = tuple[dict[str, tuple[Path, dict[str, Any]]], Path]


def _stage_onnx(stack: contextlib.ExitStack, target: Path, inputs: _Inputs, opset: int) -> _Staged:
    from cnnedge.export import onnx_export

    tmp = stack.enter_context(atomic_path(target))
    proto = onnx_export.keras_to_onnx(inputs.model, inputs.plan.export_shape, opset)
    onnx_export.save_onnx(proto, tmp)
    return {target.name: (tmp, {"opset": opset})}, tmp


def _stage_onnx_int8(
    stack: contextlib.ExitStack, target: Path, inputs: _Inputs, float_onnx: Path
) -> _Staged:
    from cnnedge.export import onnx_export

    tmp = stack.enter_context(atomic_path(target))
    onnx_export.quantize_onnx_int8(float_onnx, tmp, inputs.calibration)
    extra = {
        "quantisation": "static QDQ: uint8 activations, per-channel symmetric int8 weights, MinMax calibration",
        "calibration_images": len(inputs.calibration),
    }
    return {target.name: (tmp, extra)}, tmp


def _stage_triton(
    stack: contextlib.ExitStack, root: Path, pkg: Package, inputs: _Inputs, float_onnx: Path
) -> _Staged:
    """config.pbtxt, labels.txt and 1/model.onnx (the float model's bytes) of a Triton model."""
    from cnnedge.export import onnx_export

    name = triton_model_name(pkg.name)
    shape = inputs.plan.export_shape
    texts = {
        "config.pbtxt": onnx_export.triton_config(name, shape, len(pkg.labels), TRITON_MAX_BATCH),
        "labels.txt": "\n".join(pkg.labels) + "\n",
        "1/model.onnx": None,
    }
    staged: dict[str, tuple[Path, dict[str, Any]]] = {}
    for rel, text in texts.items():
        tmp = stack.enter_context(atomic_path(root / "triton" / name / rel))
        if text is None:
            tmp.write_bytes(float_onnx.read_bytes())
        else:
            tmp.write_text(text, "utf-8")
        staged[f"triton/{name}/{rel}"] = (tmp, {})
    return staged, tmp


def _stage_tflite(
    stack: contextlib.ExitStack, target: Path, fmt: ExportFormat, inputs: _Inputs
) -> _Staged:
    from cnnedge.export import tflite_export
    from cnnedge.export.runners import TFLiteRunner

    mode = {"tflite": "float32", "tflite-fp16": "float16", "tflite-int8": "int8"}[fmt.name]
    tmp = stack.enter_context(atomic_path(target))
    tmp.write_bytes(tflite_export.keras_to_tflite(inputs.model, mode, inputs.calibration))
    extra: dict[str, Any] = {"mode": mode, **TFLiteRunner(tmp).quantization()}
    if mode == "int8":
        extra["calibration_images"] = len(inputs.calibration)
    return {target.name: (tmp, extra)}, tmp


def _scratch_onnx(stack: contextlib.ExitStack, inputs: _Inputs, opset: int) -> Path:
    """A float ONNX file outside the package, for int8/Triton exports without --format onnx."""
    from cnnedge.export import onnx_export

    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cnnedge-onnx-")))
    path = folder / "model.onnx"
    onnx_export.save_onnx(
        onnx_export.keras_to_onnx(inputs.model, inputs.plan.export_shape, opset), path
    )
    return path


def _missing_dirs(root: Path, fmts: Sequence[ExportFormat], name: str) -> list[Path]:
    """The folders a Triton export would create, deepest first (removed again on failure)."""
    if not any(f.name == "triton" for f in fmts):
        return []
    base = root / "triton"
    chain = [base, base / triton_model_name(name), base / triton_model_name(name) / "1"]
    return [d for d in reversed(chain) if not d.exists()]


def _remove_empty(folders: Sequence[Path]) -> None:
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only succeeds when empty, i.e. when the export failed


def _record(
    meta: dict[str, Any],
    records: dict[str, Any],
    plan: ShapePlan,
    opset: int,
    inputs: _Inputs,
    fmts: Sequence[ExportFormat],
) -> None:
    meta.setdefault("files", {}).update(records)
    meta["export"] = {
        "formats": sorted({*meta.get("export", {}).get("formats", []), *(f.name for f in fmts)}),
        "opset": opset,
        "input_shape": list(plan.export_shape),
        "verification_images": len(inputs.y_test),
        "calibration_images": len(inputs.calibration),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "library_versions": library_versions(
            "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert"
        ),
    }
