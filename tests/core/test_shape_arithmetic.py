"""The pure shape arithmetic agrees with Keras, and refuses collapsing stacks with a useful message."""

from __future__ import annotations

import random

import pytest

from cnnedge.arch import (
    ArchSpec,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPooling2D,
    load_arch,
    preset_names,
)
from cnnedge.errors import ArchitectureError, ShapeError
from cnnedge.shapes import (
    check_classifier,
    count_params,
    format_table,
    infer_shapes,
    min_input_side,
    output_length,
    trace,
)

SEED_OUTPUTS = [
    (26, 26, 64),
    (26, 26, 64),
    (24, 24, 64),
    (24, 24, 64),
    (12, 12, 64),
    (10, 10, 128),
    (10, 10, 128),
    (8, 8, 128),
    (8, 8, 128),
    (4, 4, 128),
    (4, 4, 128),
    (2, 2, 128),
    (2, 2, 128),
    (512,),
    (256,),
    (256,),
    (10,),
]


def test_seed_table_matches_spec():
    rows = check_classifier(load_arch("seed"))
    assert [r.output_shape for r in rows] == SEED_OUTPUTS
    assert count_params(rows) == (393_930, 1_024)
    assert "total params: 394,954" in format_table(rows)


def test_seed_minimum_input_is_20():
    spec = load_arch("seed")
    assert min_input_side(spec) == 20
    infer_shapes(spec, (20, 20, 1))
    with pytest.raises(ShapeError):
        infer_shapes(spec, (19, 19, 1))


def test_collapse_message_names_layer_shapes_and_minimum():
    with pytest.raises(ShapeError) as info:
        infer_shapes(load_arch("seed"), (8, 8, 1))
    assert str(info.value) == (
        "input 8x8 collapses at layer 6 Conv2D(3x3): 2x2 -> 0x0; "
        "this architecture needs at least 20x20"
    )


def test_one_pooling_too_many_collapses_at_that_pooling():
    seed = load_arch("seed")
    layers = list(seed.layers)
    layers.insert(12, MaxPooling2D())
    layers.insert(13, MaxPooling2D())  # 2x2 -> 1x1 -> 0x0
    spec = ArchSpec("deep", seed.input_shape, 10, tuple(layers))
    with pytest.raises(ShapeError, match=r"collapses at layer 14 MaxPooling2D\(2x2\): 1x1 -> 0x0"):
        infer_shapes(spec)


@pytest.mark.parametrize(
    ("length", "window", "stride", "padding", "expected"),
    [
        (28, 3, 1, "valid", 26),
        (3, 3, 1, "valid", 1),
        (2, 3, 1, "valid", 0),
        (7, 2, 2, "valid", 3),
        (7, 2, 2, "same", 4),
        (1, 5, 3, "same", 1),
    ],
)
def test_output_length(length, window, stride, padding, expected):
    assert output_length(length, window, stride, padding) == expected


def test_classifier_must_end_in_class_vector():
    spec = ArchSpec("noflat", (28, 28, 1), 10, (Conv2D(8), Dense("num_classes")))
    with pytest.raises(
        ArchitectureError, match=r"outputs 26x26x10, a classifier must output \(10,\)"
    ):
        check_classifier(spec)


def test_conv_after_flatten_is_refused():
    spec = ArchSpec("bad", (28, 28, 1), 10, (Flatten(), Conv2D(8)))
    with pytest.raises(ArchitectureError, match=r"layer 2 Conv2D.*needs an HxWxC input, got 784"):
        trace(spec)


def _random_stack(rng: random.Random) -> ArchSpec:
    """A random but plausible classifier: conv/pool/bn/dropout blocks, Flatten, Dense layers."""
    layers: list = []
    for _ in range(rng.randint(1, 6)):
        kind = rng.choice(["conv", "conv", "pool", "bn", "drop"])
        padding = rng.choice(["valid", "same"])
        if kind == "conv":
            kernel = (rng.randint(1, 5), rng.randint(1, 5))
            strides = (rng.randint(1, 3), rng.randint(1, 3))
            layers.append(Conv2D(rng.choice([2, 4, 8]), kernel, strides, padding, "relu", 0.01))
        elif kind == "pool":
            pool = (rng.randint(1, 3), rng.randint(1, 3))
            strides = rng.choice([None, (rng.randint(1, 3), rng.randint(1, 3))])
            layers.append(MaxPooling2D(pool, strides, padding))
        elif kind == "bn":
            layers.append(BatchNormalization())
        else:
            layers.append(Dropout(0.25))
    if rng.random() < 0.3:
        layers.append(Dense(rng.choice([3, 5])))  # Dense on a feature map acts on channels
    layers += [Flatten(), Dense(rng.choice([4, 16]), "relu"), Dense("num_classes", "softmax")]
    shape = (rng.randint(3, 40), rng.randint(3, 40), rng.choice([1, 3]))
    return ArchSpec("random", shape, rng.randint(2, 10), tuple(layers))


@pytest.mark.slow
def test_shapes_and_params_agree_with_keras_on_presets_and_random_stacks():
    keras = pytest.importorskip("keras")
    from cnnedge.train.model import build_model

    rng = random.Random(1234)
    specs = [load_arch(name) for name in preset_names()] + [_random_stack(rng) for _ in range(40)]
    collapsed = built = 0
    for spec in specs:
        rows = trace(spec)
        if rows[-1].collapsed:
            collapsed += 1
            _assert_keras_collapses_there(keras, spec, rows)
            continue
        built += 1
        model = build_model(spec)
        for row, layer in zip(rows, model.layers, strict=True):
            where = f"{spec.input_shape} layer {row.index} {row.layer}"
            assert tuple(layer.output.shape[1:]) == row.output_shape, where
            trainable = sum(int(w.numpy().size) for w in layer.trainable_weights)
            frozen = sum(int(w.numpy().size) for w in layer.non_trainable_weights)
            assert (trainable, frozen) == (row.trainable, row.non_trainable), where
    # The random draw must exercise both outcomes, or the test proves little.
    assert built >= 10 and collapsed >= 3, (built, collapsed)


def _assert_keras_collapses_there(keras, spec, rows):
    """Keras, built layer by layer past our own check, agrees up to the layer where ours collapses.

    Keras 3.13+ refuses that layer with ValueError; Keras 3.12 (the last for Python 3.10) builds
    it with a zero-size map, which is the silent failure the shape check exists to catch.
    """
    from cnnedge.train.model import _keras_layer

    model = keras.Sequential([keras.Input(spec.input_shape)])
    for row in rows:
        where = f"{spec.input_shape} layer {row.index} {row.layer}"
        try:
            model.add(_keras_layer(keras, spec, row.layer))
        except ValueError:
            assert row is rows[-1], f"Keras refused {where}, which survives here"
            return
        got = tuple(max(int(d), 0) for d in model.layers[-1].output.shape[1:])
        assert got == row.output_shape, f"{where}: Keras {got}, here {row.output_shape}"
    assert 0 in got, f"{spec.input_shape}: Keras kept {got} where the map collapses here"
