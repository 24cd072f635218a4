"""Compare an artifact's probabilities with Keras' on held-out images and apply the gates."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cnnedge.errors import CnnedgeError
from cnnedge.export.formats import MAX_ACCURACY_DROP, ExportFormat


class VerificationError(CnnedgeError):
    """An exported file disagrees with Keras beyond its format's tolerance (exit code 1)."""


@dataclass(frozen=True)
class Verification:
    """Measured agreement of one artifact with Keras on `images` held-out test images."""

    images: int
    max_abs_diff: float
    top1_agreement: float
    accuracy: float
    keras_accuracy: float
    passed: bool
    rule: str

    @property
    def accuracy_drop(self) -> float:
        return self.keras_accuracy - self.accuracy

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "accuracy_drop": self.accuracy_drop}


def measure(
    fmt: ExportFormat, reference: np.ndarray, probs: np.ndarray, labels: np.ndarray
) -> Verification:
    """Agreement figures of `probs` against the Keras `reference`, and whether the gate passes.

    Args:
        fmt: the format (its tolerance rule).
        reference: Keras probabilities (N, K).
        probs: the artifact's probabilities (N, K).
        labels: true class indices (N,).

    Returns:
        The verification; `passed` is False if the format's rule is broken.
    """
    if probs.shape != reference.shape:
        raise VerificationError(
            f"{fmt.filename} outputs shape {probs.shape}, Keras {reference.shape}; the export is "
            "broken, re-run `cnnedge export`"
        )
    max_abs = float(np.max(np.abs(probs.astype(np.float64) - reference)))
    agreement = float(np.mean(probs.argmax(1) == reference.argmax(1)))
    accuracy = float(np.mean(probs.argmax(1) == labels))
    keras_accuracy = float(np.mean(reference.argmax(1) == labels))
    if fmt.max_abs_diff is not None:
        rule = f"max |p - p_keras| <= {fmt.max_abs_diff:g} and 100% top-1 agreement"
        passed = max_abs <= fmt.max_abs_diff and agreement == 1.0
    else:
        rule = f"test accuracy at most {MAX_ACCURACY_DROP * 100:g} point below Keras"
        passed = keras_accuracy - accuracy <= MAX_ACCURACY_DROP + 1e-12
    return Verification(
        len(labels), max_abs, agreement, accuracy, keras_accuracy, bool(passed), rule
    )


def require_passed(fmt: ExportFormat, result: Verification) -> None:
    """Raise `VerificationError` with the measured numbers if `result` broke its rule."""
    if result.passed:
        return
    hint = (
        "calibrate on more representative images, or ship the float model"
        if fmt.lossy
        else "the converter changed the model's maths; report it with the library versions"
    )
    raise VerificationError(
        f"{fmt.name} ({fmt.filename}) failed verification on {result.images} held-out images: "
        f"max abs difference {result.max_abs_diff:.3g}, top-1 agreement "
        f"{result.top1_agreement:.2%}, accuracy {result.accuracy:.2%} vs Keras "
        f"{result.keras_accuracy:.2%} ({result.accuracy_drop * 100:+.2f} points lost); rule: "
        f"{result.rule}; nothing was written - {hint}"
    )
