"""The export formats: their names on the command line, file names and verification rules."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cnnedge.errors import UsageError

# `cnnedge export` with no --format writes the two formats the seed's user named.
DEFAULT_FORMATS = ("onnx", "tflite")


@dataclass(frozen=True)
class ExportFormat:
    """One export target: where it is written and how strictly it must match Keras.

    float32 formats must match Keras' probabilities within `max_abs_diff` with 100% top-1
    agreement. Lossy ones (int8, and float16 weights with their 3 significant digits) are gated on
    accuracy instead: at most `MAX_ACCURACY_DROP` below Keras.
    """

    name: str
    filename: str
    runtime: str  # "onnxruntime" or "litert"
    precision: str  # "float32", "float16" or "int8"
    description: str

    @property
    def lossy(self) -> bool:
        return self.precision != "float32"

    @property
    def max_abs_diff(self) -> float | None:
        return None if self.lossy else 1e-4


FORMATS: tuple[ExportFormat, ...] = (
    ExportFormat("onnx", "model.onnx", "onnxruntime", "float32", "ONNX float32"),
    ExportFormat("onnx-int8", "model.int8.onnx", "onnxruntime", "int8", "ONNX static int8 QDQ"),
    ExportFormat("tflite", "model.tflite", "litert", "float32", "TFLite float32"),
    ExportFormat("tflite-fp16", "model.fp16.tflite", "litert", "float16", "TFLite float16 weights"),
    ExportFormat("tflite-int8", "model.int8.tflite", "litert", "int8", "TFLite full-integer int8"),
    ExportFormat("triton", "triton", "onnxruntime", "float32", "Triton/KServe model repository"),
)
MAX_ACCURACY_DROP = 0.01  # one percentage point


def get_format(name: str) -> ExportFormat:
    """The format called `name` (case-insensitive).

    Args:
        name: a format name such as "onnx-int8".

    Returns:
        Its spec.
    """
    for fmt in FORMATS:
        if fmt.name == name.strip().lower():
            return fmt
    raise UsageError(
        f"unknown export format {name!r}; choose from {', '.join(f.name for f in FORMATS)} or all"
    )


def parse_formats(names: Iterable[str] | None) -> tuple[ExportFormat, ...]:
    """Resolve --format values ("all", repeats, comma lists) into specs in canonical order.

    Args:
        names: the values given, or None/empty for the defaults (onnx and tflite).

    Returns:
        The distinct formats, in the order of `FORMATS`.
    """
    wanted: set[str] = set()
    for value in names or DEFAULT_FORMATS:
        for part in value.split(","):
            if not part.strip():
                continue
            if part.strip().lower() == "all":
                wanted.update(f.name for f in FORMATS)
            else:
                wanted.add(get_format(part).name)
    if not wanted:
        raise UsageError("no export format given; pass e.g. --format onnx (or --format all)")
    return tuple(f for f in FORMATS if f.name in wanted)


def triton_model_name(package_name: str) -> str:
    """A Triton model name for a package: letters, digits, '_' and '-' only."""
    cleaned = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in package_name)
    return cleaned or "model"
