"""What a finished run shows: test metrics, the two pictures, and the closing terminal table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnedge.package import atomic_path


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (K, K): row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray, labels: Sequence[str]) -> dict[str, float | None]:
    """Recall of each class (None for a class absent from the test split)."""
    totals = matrix.sum(axis=1)
    return {
        label: (float(matrix[i, i] / totals[i]) if totals[i] else None)
        for i, label in enumerate(labels)
    }


def weakest(per_class: Mapping[str, float | None], count: int = 3) -> list[tuple[str, float]]:
    """The `count` classes with the lowest accuracy, weakest first."""
    known = [(k, v) for k, v in per_class.items() if v is not None]
    return sorted(known, key=lambda kv: (kv[1], kv[0]))[:count]


def plot_curves(history: Mapping[str, Sequence[float]], target: Path) -> None:
    """Write `curves.png`: loss and accuracy per epoch, train and validation, atomically."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = _figure(1, 2, (10, 4))
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for ax, key, title in ((axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")):
        for prefix, style in (("", "-o"), ("val_", "-s")):
            values = history.get(prefix + key)
            if values:
                ax.plot(
                    epochs, values, style, markersize=3, label="validation" if prefix else "train"
                )
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, target)


def plot_confusion(matrix: np.ndarray, labels: Sequence[str], target: Path) -> None:
    """Write `confusion.png`: the test confusion matrix with counts in the cells, atomically."""
    k = len(labels)
    side = max(4.0, 0.5 * k + 2)
    fig, ax = _figure(1, 1, (side, side))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(k), labels=labels, rotation=90 if k > 12 else 0)
    ax.set_yticks(range(k), labels=labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"test confusion matrix ({int(matrix.sum())} images)")
    peak = matrix.max() or 1
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    colour = "white" if matrix[i, j] > peak / 2 else "black"
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=colour)
    _save(fig, target)


def summary_table(metrics: Mapping[str, Any], root: Path) -> str:
    """The closing table: test accuracy, the three weakest classes, time taken, where files are."""
    rows = [
        ("test accuracy", f"{metrics['test_accuracy']:.2%} (loss {metrics['test_loss']:.4f})"),
        (
            "weakest classes",
            ", ".join(f"{k} {v:.1%}" for k, v in weakest(metrics["per_class_accuracy"])),
        ),
        (
            "epochs",
            f"{metrics['epochs_run']} run, best {metrics['best_epoch']}"
            + (" (resumed)" if metrics.get("resumed_from_epoch") else ""),
        ),
        ("time", f"{metrics['seconds']:.1f} s"),
        ("files", str(root)),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _figure(rows: int, cols: int, size: tuple[float, float]) -> tuple[Any, Any]:
    # The object API with the Agg canvas: no pyplot state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols)
    return fig, axes


def _save(fig: Any, target: Path) -> None:
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
