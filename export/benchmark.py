"""`benchmark_package`: every format in a package, side by side, like Ultralytics' `yolo benchmark`.

Keras is the first row and the reference: each artifact's accuracy, top-1 agreement and largest
probability difference are measured against it on the held-out test split. Throughput (a batch
size over the test split, best of `runs`) and latency at batch 1 (median) are timed in this
process, round-robin over the formats so that background load affects them alike.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnedge.errors import CnnedgeError
from cnnedge.export.formats import FORMATS
from cnnedge.package import Package, write_json_atomic

BENCHMARK_FILE = "benchmark.json"
_LATENCY_CHUNK = 20


@dataclass(frozen=True)
class BenchRow:
    """One format's figures; `status` is "ok" or the reason it could not run."""

    format: str
    file: str
    status: str
    size_kb: float | None = None
    accuracy: float | None = None
    top1_agreement: float | None = None
    max_abs_diff: float | None = None
    ms_per_image_batch1: float | None = None
    images_per_s: float | None = None


@dataclass(frozen=True)
class BenchReport:
    """The rows plus how they were measured."""

    rows: tuple[BenchRow, ...]
    batch_size: int
    images: int
    threads: int
    machine: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "images": self.images,
            "threads": self.threads,
            "machine": self.machine,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "rows": [asdict(r) for r in self.rows],
        }

    def row(self, fmt: str) -> BenchRow:
        return next(r for r in self.rows if r.format == fmt)


def benchmark_package(
    root: str | Path,
    batch_size: int = 32,
    latency_images: int = 100,
    runs: int = 3,
    threads: int = 0,
    write: bool = True,
) -> BenchReport:
    """Measure Keras and every exported format present in the package.

    Args:
        root: the package folder.
        batch_size: the batch for the throughput column.
        latency_images: how many single images time the batch-1 latency (median per image).
        runs: throughput passes over the test split; the fastest counts.
        threads: CPU threads per runtime; 0 means all cores.
        write: also write `benchmark.json` into the package.

    Returns:
        The report, Keras first, then the formats in canonical order.
    """
    import keras

    from cnnedge.export.runners import KerasRunner, OnnxRunner, TFLiteRunner
    from cnnedge.train.data import load_from_metadata

    if batch_size < 1 or latency_images < 1 or runs < 1:
        raise CnnedgeError(
            f"batch size {batch_size}, latency images {latency_images} and runs {runs} must all "
            "be at least 1"
        )
    pkg = Package.load(root)
    data = load_from_metadata(pkg.metadata.get("data", {}), pkg.input_shape)
    x, y = data.x_test, data.y_test  # (N, H, W, C), (N,)
    cores = threads or os.cpu_count() or 1
    keras_path = pkg.require("model.keras")
    model = keras.models.load_model(keras_path, safe_mode=True)
    timers = [_Timer("keras", "model.keras", KerasRunner(model, pkg.input_shape), keras_path, x)]
    for fmt in FORMATS:
        rel = _artifact(fmt.name, fmt.filename, pkg)
        if rel is None:
            continue
        timer = _Timer(fmt.name, rel, None, pkg.path(rel), x)
        try:
            path = pkg.require(rel)
            shape = tuple(pkg.files[rel].get("input_shape", pkg.input_shape))
            timer.x = x if shape == pkg.input_shape else _resize(x, shape)
            timer.runner = (
                OnnxRunner(path, threads)
                if fmt.runtime == "onnxruntime"
                else TFLiteRunner(path, cores)
            )
        except Exception as exc:  # one broken file must not hide the others' rows
            timer.fail(exc)
        timers.append(timer)
    # Round-robin: every format runs once per round, so a noisy neighbour slows them alike.
    for _ in range(runs):
        for timer in timers:
            timer.throughput(batch_size)
    for timer in timers:
        timer.single(5, warm_up=True)
    # In chunks: switching models after every image would time cache misses, not the model.
    for chunk in range(0, latency_images, _LATENCY_CHUNK):
        for timer in timers:
            for i in range(chunk, min(chunk + _LATENCY_CHUNK, latency_images)):
                timer.single(i)
    reference = timers[0].probs
    if reference is None:
        raise CnnedgeError(f"Keras could not run {keras_path}: {timers[0].error}")
    rows = [timer.row(y, reference) for timer in timers]
    report = BenchReport(tuple(rows), batch_size, len(y), cores, _machine())
    if write:
        write_json_atomic(pkg.path(BENCHMARK_FILE), report.to_dict())
    return report


def _artifact(name: str, filename: str, pkg: Package) -> str | None:
    """The package-relative file that runs for a format, if the package lists one."""
    if name == "triton":
        listed = [f for f in pkg.files if f.startswith("triton/") and f.endswith("/1/model.onnx")]
        return listed[0] if listed else None
    return filename if filename in pkg.files else None


class _Timer:
    """The measurements of one format, collected round by round."""

    def __init__(self, name: str, rel: str, runner: Any, path: Path, x: np.ndarray) -> None:
        self.name, self.rel, self.runner, self.path, self.x = name, rel, runner, path, x
        self.error: str | None = None
        self.probs: np.ndarray | None = None  # (N, K) from the first full pass
        self.best = float("inf")
        self.singles: list[float] = []

    def fail(self, exc: BaseException) -> None:
        self.error = f"FAIL: {type(exc).__name__}: {exc}"[:200]

    def throughput(self, batch_size: int) -> None:
        if self.error is not None:
            return
        try:
            if self.probs is None:
                self.runner.predict(self.x[: 2 * batch_size], batch_size)  # warm-up
            start = time.perf_counter()
            out = self.runner.predict(self.x, batch_size)
            self.best = min(self.best, time.perf_counter() - start)
            self.probs = out if self.probs is None else self.probs
        except Exception as exc:
            self.fail(exc)

    def single(self, index: int, warm_up: bool = False) -> None:
        if self.error is not None:
            return
        image = self.x[index : index + 1]
        try:
            start = time.perf_counter()
            self.runner.predict(image, 1)  # TFLite re-allocates on the first batch-1 call
            if not warm_up:
                self.singles.append(time.perf_counter() - start)
        except Exception as exc:
            self.fail(exc)

    def row(self, y: np.ndarray, reference: np.ndarray) -> BenchRow:
        if self.error is not None or self.probs is None or not self.singles:
            return BenchRow(self.name, self.rel, self.error or "FAIL: no measurement")
        probs = self.probs
        return BenchRow(
            format=self.name,
            file=self.rel,
            status="ok",
            size_kb=self.path.stat().st_size / 1024,
            accuracy=float(np.mean(probs.argmax(1) == y)),
            top1_agreement=float(np.mean(probs.argmax(1) == reference.argmax(1))),
            max_abs_diff=float(np.max(np.abs(probs - reference))),
            ms_per_image_batch1=statistics.median(self.singles) * 1000,
            images_per_s=len(self.x) / self.best,
        )


def _resize(x: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    import tensorflow as tf

    return tf.image.resize(x, tuple(shape[:2])).numpy().astype(np.float32)  # (N, H, W, C)


def _machine() -> str:
    return (
        f"{platform.machine()} {platform.processor() or platform.system()}, {os.cpu_count()} cores"
    )


def int8_vs_float(report: BenchReport) -> tuple[float, float, float] | None:
    """(throughput ratio, size ratio, accuracy change in points) of int8 vs float ONNX, if both ran."""
    ok = {r.format: r for r in report.rows if r.status == "ok"}
    f32, i8 = ok.get("onnx"), ok.get("onnx-int8")
    if f32 is None or i8 is None:
        return None
    figures = (
        f32.images_per_s,
        i8.images_per_s,
        f32.size_kb,
        i8.size_kb,
        f32.accuracy,
        i8.accuracy,
    )
    if any(v is None for v in figures):
        return None
    f32_ips, i8_ips, f32_kb, i8_kb, f32_acc, i8_acc = (float(v or 0.0) for v in figures)
    return i8_ips / f32_ips, f32_kb / i8_kb, (i8_acc - f32_acc) * 100


def format_report(report: BenchReport) -> str:
    """The report as an aligned text table, with the int8/float ONNX speed ratio if both ran.

    Args:
        report: a benchmark report.

    Returns:
        The table text.
    """
    b = report.batch_size
    head = (
        f"{'format':<12} {'file':<26} {'status':<6} {'size KB':>9} {'accuracy':>9} "
        f"{'top-1 vs keras':>14} {'max |dp|':>9} {'ms/img b1':>10} {f'img/s b{b}':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in report.rows:
        if r.status != "ok":
            lines.append(f"{r.format:<12} {r.file:<26} {r.status}")
            continue
        lines.append(
            f"{r.format:<12} {r.file:<26} {r.status:<6} {r.size_kb:>9.1f} {r.accuracy:>9.2%} "
            f"{r.top1_agreement:>14.2%} {r.max_abs_diff:>9.2g} {r.ms_per_image_batch1:>10.3f} "
            f"{r.images_per_s:>10,.0f}"
        )
    ratio = int8_vs_float(report)
    if ratio is not None:
        speed, smaller, points = ratio
        lines.append(
            f"onnx-int8 vs onnx: {speed:.2f}x images/s at batch {b}, {smaller:.1f}x smaller, "
            f"accuracy {points:+.2f} points"
        )
    lines.append(f"{report.images} test images, {report.threads} threads, {report.machine}")
    return "\n".join(lines)
