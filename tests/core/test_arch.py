"""Architecture files: presets, parsing, validation messages, round trips."""

from __future__ import annotations

import pytest

from cnnedge.arch import (
    Conv2D,
    Dense,
    from_dict,
    load_arch,
    parse_arch,
    parse_shape,
    preset_names,
)
from cnnedge.errors import ArchitectureError


def test_presets_ship():
    assert {"seed", "seed-2x2"} <= set(preset_names())


def test_seed_preset_is_the_seed_stack():
    spec = load_arch("seed")
    kinds = [type(layer).__name__ for layer in spec.layers]
    assert kinds == [
        "Conv2D",
        "BatchNormalization",
        "Conv2D",
        "BatchNormalization",
        "MaxPooling2D",
        "Conv2D",
        "BatchNormalization",
        "Conv2D",
        "BatchNormalization",
        "MaxPooling2D",
        "BatchNormalization",
        "MaxPooling2D",
        "Dropout",
        "Flatten",
        "Dense",
        "Dropout",
        "Dense",
    ]
    convs = [layer for layer in spec.layers if isinstance(layer, Conv2D)]
    assert [c.filters for c in convs] == [64, 64, 128, 128]
    assert all(c.kernel == (3, 3) and c.l2 == 0.01 and c.padding == "valid" for c in convs)
    assert spec.layers[-1] == Dense("num_classes", "softmax")
    assert spec.input_shape == (28, 28, 1) and spec.num_classes == 10


def test_seed_2x2_changes_only_the_first_layers():
    seed, small = load_arch("seed"), load_arch("seed-2x2")
    assert small.layers[0] == Conv2D(64, (2, 2), activation="relu")
    assert small.layers[1] == Conv2D(128, (3, 3), activation="relu")
    assert small.layers[2:] == seed.layers[3:]


def test_round_trip_through_dict():
    for name in preset_names():
        spec = load_arch(name)
        assert from_dict(spec.to_dict()) == spec


def test_user_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(
        'input_shape = [32, 32, 3]\nnum_classes = 4\n[[layers]]\ntype = "Conv2D"\nfilters = 8\n'
        'kernel = 5\n[[layers]]\ntype = "Flatten"\n[[layers]]\ntype = "Dense"\nunits = "num_classes"\n'
    )
    spec = load_arch(path)
    assert spec.name == "mine" and spec.layers[0].kernel == (5, 5) and spec.num_classes == 4


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[[layers]]\ntype = "Conv3D"', "unknown layer type 'Conv3D'"),
        ('[[layers]]\ntype = "Conv2D"\nfilters = 0', "filters is 0; it must be a positive integer"),
        ('[[layers]]\ntype = "Conv2D"\nfilters = 8\nsize = 3', "unknown argument"),
        ('[[layers]]\ntype = "Conv2D"\nfilters = 8\npadding = "full"', "padding 'full'"),
        ('[[layers]]\ntype = "Dropout"\nrate = 1.5', "rate 1.5"),
        ('[[layers]]\ntype = "Dense"\nunits = 4\nactivation = "magic"', "activation 'magic'"),
        ("num_classes = 1\n[[layers]]\ntype = 'Flatten'", "num_classes is 1"),
        ("input_shape = [28, 28]\n[[layers]]\ntype = 'Flatten'", "write [height, width, channels]"),
        ("layers = 3 = 4", "not valid TOML"),
        ("", "no [[layers]] tables"),
    ],
)
def test_bad_files_say_what_and_how(body, message):
    with pytest.raises(ArchitectureError) as info:
        parse_arch(body, source="x.toml")
    assert message in str(info.value) and str(info.value).startswith("x.toml")


def test_unknown_preset_or_missing_file():
    with pytest.raises(ArchitectureError, match=r"neither a preset .*seed.* nor an existing file"):
        load_arch("no-such-arch")


@pytest.mark.parametrize(
    ("text", "shape"), [("28x28x1", (28, 28, 1)), ("20x20", (20, 20, 1)), ("32,32,3", (32, 32, 3))]
)
def test_parse_shape(text, shape):
    assert parse_shape(text) == shape


@pytest.mark.parametrize("text", ["28", "0x28x1", "axbxc", "28x28x1x1"])
def test_parse_shape_refuses(text):
    with pytest.raises(ArchitectureError, match=r"HxWxC"):
        parse_shape(text)
