"""Architecture as data: frozen layer specs, read from TOML presets or user files.

An architecture file names the input shape, the class count and the layers in order:

    input_shape = [28, 28, 1]
    num_classes = 10

    [[layers]]
    type = "Conv2D"
    filters = 64
    kernel = [3, 3]
    activation = "relu"
    l2 = 0.01

`units = "num_classes"` on a Dense layer stands for the class count, so one file serves any
number of labels. Nothing here imports TensorFlow: `cnnedge.train.model` turns a spec into Keras.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from cnnedge.errors import ArchitectureError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

ACTIVATIONS = ("linear", "relu", "relu6", "elu", "selu", "sigmoid", "tanh", "softmax", "swish")
PADDINGS = ("valid", "same")
NUM_CLASSES = "num_classes"


@dataclass(frozen=True)
class Conv2D:
    """2-D convolution; `l2` is the kernel regulariser's factor (None for none)."""

    filters: int
    kernel: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (1, 1)
    padding: str = "valid"
    activation: str = "linear"
    l2: float | None = None

    def describe(self) -> str:
        return f"Conv2D({self.kernel[0]}x{self.kernel[1]})"


@dataclass(frozen=True)
class BatchNormalization:
    """Batch normalisation over the channel axis."""

    def describe(self) -> str:
        return "BatchNormalization"


@dataclass(frozen=True)
class MaxPooling2D:
    """2-D max pooling; `strides=None` means the pool size, as in Keras."""

    pool_size: tuple[int, int] = (2, 2)
    strides: tuple[int, int] | None = None
    padding: str = "valid"

    def describe(self) -> str:
        return f"MaxPooling2D({self.pool_size[0]}x{self.pool_size[1]})"


@dataclass(frozen=True)
class Dropout:
    """Dropout with the given rate (active in training only)."""

    rate: float

    def describe(self) -> str:
        return f"Dropout({self.rate:g})"


@dataclass(frozen=True)
class Flatten:
    """Flatten everything but the batch axis."""

    def describe(self) -> str:
        return "Flatten"


@dataclass(frozen=True)
class Dense:
    """Fully connected layer; `units` may be the string "num_classes"."""

    units: int | str
    activation: str = "linear"
    l2: float | None = None

    def describe(self) -> str:
        return f"Dense({self.units})"


Layer = Conv2D | BatchNormalization | MaxPooling2D | Dropout | Flatten | Dense
LAYER_TYPES: dict[str, type[Layer]] = {
    cls.__name__: cls for cls in (Conv2D, BatchNormalization, MaxPooling2D, Dropout, Flatten, Dense)
}


@dataclass(frozen=True)
class ArchSpec:
    """A whole classifier: input shape (H, W, C), class count and the layer stack."""

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    layers: tuple[Layer, ...]
    description: str = ""
    source: str = field(default="", compare=False)

    def units(self, layer: Dense) -> int:
        """Resolve a Dense layer's units ("num_classes" becomes the class count)."""
        return self.num_classes if layer.units == NUM_CLASSES else int(layer.units)

    def with_input_shape(self, shape: tuple[int, int, int]) -> ArchSpec:
        return replace(self, input_shape=tuple(shape))  # type: ignore[arg-type]

    def with_num_classes(self, num_classes: int) -> ArchSpec:
        return replace(self, num_classes=num_classes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON/TOML-ready dict that `from_dict` reads back to an equal spec."""
        layers = []
        for layer in self.layers:
            entry: dict[str, Any] = {"type": type(layer).__name__}
            entry.update(
                {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(layer).items()}
            )
            layers.append({k: v for k, v in entry.items() if v is not None})
        return {
            "name": self.name,
            "description": self.description,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "layers": layers,
        }


def preset_names() -> list[str]:
    """The architecture presets shipped with the package."""
    files = resources.files("cnnedge.presets").iterdir()
    return sorted(f.name[: -len(".toml")] for f in files if f.name.endswith(".toml"))


def load_arch(name_or_path: str | Path) -> ArchSpec:
    """Load a preset by name, or an architecture file by path.

    Args:
        name_or_path: a preset name such as "seed", or the path of a TOML file.

    Returns:
        The validated spec.
    """
    text_name = str(name_or_path)
    if text_name in preset_names():
        text = resources.files("cnnedge.presets").joinpath(f"{text_name}.toml").read_text("utf-8")
        return parse_arch(text, source=f"preset {text_name}", default_name=text_name)
    path = Path(name_or_path)
    if not path.is_file():
        raise ArchitectureError(
            f"architecture {text_name!r} is neither a preset ({', '.join(preset_names())}) "
            "nor an existing file; pass a preset name or the path of a .toml file"
        )
    return parse_arch(path.read_text("utf-8"), source=str(path), default_name=path.stem)


def parse_arch(text: str, source: str = "<string>", default_name: str = "custom") -> ArchSpec:
    """Parse TOML architecture text into a validated spec."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ArchitectureError(f"{source}: not valid TOML: {exc}") from None
    return from_dict(raw, source=source, default_name=default_name)


def from_dict(
    raw: Mapping[str, Any], source: str = "<dict>", default_name: str = "custom"
) -> ArchSpec:
    """Build a validated spec from a dict (a parsed file or `ArchSpec.to_dict()`)."""
    unknown = set(raw) - {"name", "description", "input_shape", "num_classes", "layers"}
    if unknown:
        raise ArchitectureError(
            f"{source}: unknown top-level key(s) {sorted(unknown)}; expected name, description, "
            "input_shape, num_classes, layers"
        )
    input_shape = _shape3(raw.get("input_shape", [28, 28, 1]), f"{source}: input_shape")
    num_classes = raw.get("num_classes", 10)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ArchitectureError(
            f"{source}: num_classes is {num_classes!r}; it must be an integer >= 2"
        )
    layers_raw = raw.get("layers")
    if not isinstance(layers_raw, list) or not layers_raw:
        raise ArchitectureError(
            f"{source}: no [[layers]] tables; an architecture needs at least one layer"
        )
    layers = tuple(_layer(entry, f"{source}: layer {i}") for i, entry in enumerate(layers_raw, 1))
    return ArchSpec(
        name=str(raw.get("name", default_name)),
        description=str(raw.get("description", "")),
        input_shape=input_shape,
        num_classes=num_classes,
        layers=layers,
        source=source,
    )


def parse_shape(text: str) -> tuple[int, int, int]:
    """Parse "HxWxC" (or "HxW", meaning one channel) into a shape tuple."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 2:
        values.append(1)
    if len(values) != 3 or min(values) < 1:
        raise ArchitectureError(
            f"input shape {text!r} is not HxWxC with positive integers; write e.g. 28x28x1"
        )
    return values[0], values[1], values[2]


def _layer(entry: Any, where: str) -> Layer:
    if not isinstance(entry, Mapping) or "type" not in entry:
        raise ArchitectureError(f"{where}: a layer is a table with a `type` key, got {entry!r}")
    kind = entry["type"]
    cls = LAYER_TYPES.get(kind)
    if cls is None:
        raise ArchitectureError(
            f"{where}: unknown layer type {kind!r}; supported: {', '.join(LAYER_TYPES)}"
        )
    where = f"{where} ({kind})"
    args = {k: v for k, v in entry.items() if k != "type"}
    allowed = {f.name for f in fields(cls)}
    unknown = set(args) - allowed
    if unknown:
        raise ArchitectureError(
            f"{where}: unknown argument(s) {sorted(unknown)}; {kind} takes {sorted(allowed) or 'none'}"
        )
    if "kernel" in args:
        args["kernel"] = _pair(args["kernel"], f"{where}: kernel")
    if "pool_size" in args:
        args["pool_size"] = _pair(args["pool_size"], f"{where}: pool_size")
    if args.get("strides") is not None:
        args["strides"] = _pair(args["strides"], f"{where}: strides")
    if "padding" in args and args["padding"] not in PADDINGS:
        raise ArchitectureError(f"{where}: padding {args['padding']!r}; use 'valid' or 'same'")
    if "activation" in args:
        args["activation"] = args["activation"] or "linear"
        if args["activation"] not in ACTIVATIONS:
            raise ArchitectureError(
                f"{where}: activation {args['activation']!r}; supported: {', '.join(ACTIVATIONS)}"
            )
    if "filters" in args:
        args["filters"] = _positive_int(args["filters"], f"{where}: filters")
    if "units" in args and args["units"] != NUM_CLASSES:
        args["units"] = _positive_int(args["units"], f"{where}: units")
    if "rate" in args and not (isinstance(args["rate"], (int, float)) and 0 <= args["rate"] < 1):
        raise ArchitectureError(f"{where}: rate {args['rate']!r}; a dropout rate is in [0, 1)")
    if "l2" in args and not (isinstance(args["l2"], (int, float)) and args["l2"] >= 0):
        raise ArchitectureError(f"{where}: l2 {args['l2']!r}; use a factor >= 0 such as 0.01")
    try:
        layer: Layer = cls(**args)
        return layer
    except TypeError as exc:
        raise ArchitectureError(f"{where}: {exc}") from None


def _positive_int(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ArchitectureError(f"{where} is {value!r}; it must be a positive integer")
    return value


def _pair(value: Any, where: str) -> tuple[int, int]:
    values = [value, value] if isinstance(value, int) else value
    if not isinstance(values, (list, tuple)) or len(values) != 2:
        raise ArchitectureError(f"{where} is {value!r}; write an integer or [height, width]")
    return _positive_int(values[0], where), _positive_int(values[1], where)


def _shape3(value: Any, where: str) -> tuple[int, int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise ArchitectureError(f"{where} is {value!r}; write [height, width, channels]")
    h, w, c = (_positive_int(v, where) for v in value)
    return h, w, c
