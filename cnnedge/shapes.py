"""Pure shape arithmetic for a layer stack: output shapes, parameter counts, minimum input.

Mirrors what Keras computes (see keras/src/ops/operation_utils.py) without building a model, so
`cnnedge check` and the export stage can refuse a collapsing stack before anything heavy runs.
Shapes here exclude the batch axis: (H, W, C) for maps, (F,) after Flatten.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from cnnedge.arch import (
    ArchSpec,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    MaxPooling2D,
)
from cnnedge.errors import ArchitectureError, ShapeError

Shape = tuple[int, ...]
# Upper bound for the minimum-input search; no sensible edge model needs more.
_MAX_SIDE = 4096


@dataclass(frozen=True)
class LayerShape:
    """One row of the per-layer table: 1-based index, shapes and parameter counts."""

    index: int
    layer: Layer
    input_shape: Shape
    output_shape: Shape
    trainable: int
    non_trainable: int

    @property
    def collapsed(self) -> bool:
        return any(d <= 0 for d in self.output_shape)


def output_length(length: int, window: int, stride: int, padding: str) -> int:
    """Length of one spatial axis after a convolution or pooling window (0 if it collapses).

    Args:
        length: the input length along the axis.
        window: the kernel or pool size along the axis.
        stride: the step along the axis.
        padding: "valid" (no padding) or "same" (pad so that ceil(length / stride) remain).

    Returns:
        The output length; 0 or less means the feature map vanished.
    """
    if padding == "same":
        return math.ceil(length / stride) if length > 0 else 0
    if length < window:
        return 0
    return (length - window) // stride + 1


def trace(spec: ArchSpec, input_shape: Sequence[int] | None = None) -> list[LayerShape]:
    """Every layer's shapes and parameters, stopping after the first collapsed layer.

    Args:
        spec: the architecture.
        input_shape: (H, W, C) to trace; defaults to the spec's own input shape.

    Returns:
        One row per layer traced; the last row is collapsed if the map vanished there.
    """
    shape: Shape = tuple(input_shape or spec.input_shape)
    rows: list[LayerShape] = []
    for index, layer in enumerate(spec.layers, 1):
        out, trainable, frozen = _layer_shape(spec, index, layer, shape)
        rows.append(LayerShape(index, layer, shape, out, trainable, frozen))
        if any(d <= 0 for d in out):
            break
        shape = out
    return rows


def infer_shapes(spec: ArchSpec, input_shape: Sequence[int] | None = None) -> list[LayerShape]:
    """Like `trace`, but raise `ShapeError` naming the layer where the map collapses."""
    shape = tuple(input_shape or spec.input_shape)
    rows = trace(spec, shape)
    last = rows[-1]
    if last.collapsed:
        raise ShapeError(collapse_message(spec, shape, last))
    return rows


def collapse_message(spec: ArchSpec, input_shape: Shape, row: LayerShape) -> str:
    """The user-facing sentence for a collapsed layer, with the minimum input that works."""
    side = min_input_side(spec, channels=input_shape[2])
    need = f"at least {side}x{side}" if side else f"an input larger than {_MAX_SIDE}x{_MAX_SIDE}"
    return (
        f"input {_hw(input_shape)} collapses at layer {row.index} {row.layer.describe()}: "
        f"{_hw(row.input_shape)} -> {_hw(row.output_shape)}; this architecture needs {need}"
    )


def min_input_side(spec: ArchSpec, channels: int | None = None) -> int | None:
    """The smallest square side N for which no feature map collapses (None if above 4096)."""
    c = channels or spec.input_shape[2]
    # Survival is monotonic in the side length, so a binary search is exact.
    if trace(spec, (_MAX_SIDE, _MAX_SIDE, c))[-1].collapsed:
        return None
    low, high = 1, _MAX_SIDE
    while low < high:
        mid = (low + high) // 2
        if trace(spec, (mid, mid, c))[-1].collapsed:
            low = mid + 1
        else:
            high = mid
    return low


def check_classifier(spec: ArchSpec, input_shape: Sequence[int] | None = None) -> list[LayerShape]:
    """Shapes for a classifier: no collapse, and the output is a vector of `num_classes`."""
    rows = infer_shapes(spec, input_shape)
    out = rows[-1].output_shape
    if out != (spec.num_classes,):
        raise ArchitectureError(
            f"{spec.name}: the last layer outputs {_fmt(out)}, a classifier must output "
            f'({spec.num_classes},); end the stack with Flatten and Dense(units = "num_classes")'
        )
    return rows


def count_params(rows: Sequence[LayerShape]) -> tuple[int, int]:
    """Total (trainable, non-trainable) parameters over the rows."""
    return sum(r.trainable for r in rows), sum(r.non_trainable for r in rows)


def format_table(rows: Sequence[LayerShape]) -> str:
    """A per-layer table like Keras' `model.summary()`, with totals."""
    lines = [f"{'#':>3}  {'layer':<24} {'input':>14} {'output':>14} {'params':>10}"]
    for r in rows:
        lines.append(
            f"{r.index:>3}  {r.layer.describe():<24} {_fmt(r.input_shape):>14} "
            f"{_fmt(r.output_shape):>14} {r.trainable + r.non_trainable:>10,}"
        )
    trainable, frozen = count_params(rows)
    lines.append(
        f"total params: {trainable + frozen:,} (trainable {trainable:,}, non-trainable {frozen:,})"
    )
    return "\n".join(lines)


def _layer_shape(spec: ArchSpec, index: int, layer: Layer, shape: Shape) -> tuple[Shape, int, int]:
    """(output shape, trainable params, non-trainable params) of one layer."""
    if isinstance(layer, (Conv2D, MaxPooling2D)):
        if len(shape) != 3:
            raise ArchitectureError(
                f"{spec.name}: layer {index} {layer.describe()} needs an HxWxC input, got "
                f"{_fmt(shape)}; move it before Flatten"
            )
        h, w, c = shape
        if isinstance(layer, Conv2D):
            (kh, kw), (sh, sw) = layer.kernel, layer.strides
            out = (
                output_length(h, kh, sh, layer.padding),
                output_length(w, kw, sw, layer.padding),
                layer.filters,
            )
            return out, kh * kw * c * layer.filters + layer.filters, 0
        (ph, pw) = layer.pool_size
        (sh, sw) = layer.strides or layer.pool_size
        out = (output_length(h, ph, sh, layer.padding), output_length(w, pw, sw, layer.padding), c)
        return out, 0, 0
    if isinstance(layer, BatchNormalization):
        # gamma and beta train; the moving mean and variance do not.
        return shape, 2 * shape[-1], 2 * shape[-1]
    if isinstance(layer, Dropout):
        return shape, 0, 0
    if isinstance(layer, Flatten):
        return (math.prod(shape),), 0, 0
    if isinstance(layer, Dense):
        units = spec.units(layer)
        return (*shape[:-1], units), shape[-1] * units + units, 0
    raise ArchitectureError(
        f"{spec.name}: layer {index} has unsupported type {type(layer).__name__}"
    )


def _hw(shape: Shape) -> str:
    return f"{max(shape[0], 0)}x{max(shape[1], 0)}" if len(shape) == 3 else _fmt(shape)


def _fmt(shape: Shape) -> str:
    return "x".join(str(max(d, 0)) for d in shape)
