"""The shape survival check that runs before any conversion (pure arithmetic, no TensorFlow)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cnnedge.arch import ArchSpec, from_dict
from cnnedge.errors import PackageError, ShapeError
from cnnedge.shapes import LayerShape, check_classifier

Shape3 = tuple[int, int, int]


@dataclass(frozen=True)
class ShapePlan:
    """What the export will use: the architecture, the trained input and the exported input."""

    spec: ArchSpec
    trained_shape: Shape3
    export_shape: Shape3
    rows: tuple[LayerShape, ...]

    @property
    def reshaped(self) -> bool:
        return self.export_shape != self.trained_shape


def package_spec(metadata: Mapping[str, Any]) -> ArchSpec:
    """The architecture recorded in a package's metadata, with the package's input shape.

    Args:
        metadata: the package's metadata.

    Returns:
        The spec, its input shape set to `metadata["input_shape"]`.
    """
    raw = metadata.get("architecture")
    if not isinstance(raw, Mapping):
        raise PackageError(
            'metadata.json has no "architecture" entry, so the export cannot check the input '
            "shape; re-run `cnnedge train`"
        )
    h, w, c = (int(v) for v in metadata["input_shape"])
    spec = from_dict(raw, source="metadata.json architecture")
    return spec.with_input_shape((h, w, c)).with_num_classes(len(metadata["labels"]))


def plan_shapes(metadata: Mapping[str, Any], requested: Sequence[int] | None = None) -> ShapePlan:
    """Check that the package's input (and a requested one) survive every layer of the stack.

    Args:
        metadata: the package's metadata (architecture, input_shape, labels).
        requested: the (H, W, C) asked for with --input-shape, or None for the trained one.

    Returns:
        The plan; raises `ShapeError` (exit 2) if a map collapses, the stack refuses the input,
        or the weights would not fit the requested shape.
    """
    spec = package_spec(metadata)
    trained: Shape3 = spec.input_shape
    trained_rows = check_classifier(spec, trained)  # the package itself must be sound
    if requested is None or tuple(requested) == trained:
        return ShapePlan(spec, trained, trained, tuple(trained_rows))
    h, w, c = (int(v) for v in requested)
    export_shape: Shape3 = (h, w, c)
    rows = check_classifier(spec, export_shape)  # ShapeError names the collapsing layer
    for old, new in zip(trained_rows, rows, strict=True):
        if (old.trainable, old.non_trainable) != (new.trainable, new.non_trainable):
            raise ShapeError(_weights_message(spec, trained, export_shape, old, new))
    return ShapePlan(spec, trained, export_shape, tuple(rows))


def _weights_message(
    spec: ArchSpec, trained: Shape3, asked: Shape3, old: LayerShape, new: LayerShape
) -> str:
    return (
        f"input {_fmt(asked)} passes every layer of {spec.name}, but the model was trained for "
        f"{_fmt(trained)}: layer {new.index} {new.layer.describe()} would need "
        f"{new.trainable + new.non_trainable:,} weights (input {_fmt(new.input_shape)}) instead of "
        f"the trained {old.trainable + old.non_trainable:,} (input {_fmt(old.input_shape)}); "
        f"retrain for this shape with `cnnedge train --input-shape {_fmt(asked)}`"
    )


def _fmt(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape)
