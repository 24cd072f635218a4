"""The `seed` and `seed-2x2` presets build the seed's own Keras model, layer for layer."""

from __future__ import annotations

import pytest

from cnnedge.arch import load_arch
from cnnedge.train.model import build_model, compile_model
from cnnedge.train.trainer import (
    SEED_CLASS_WEIGHTS,
    TrainOptions,
    class_weights_for,
    seed_learning_rate,
)

# Every argument the seed's code sets or relies on, per layer type.
_ARGS = {
    "Conv2D": ("filters", "kernel_size", "strides", "padding", "activation"),
    "MaxPooling2D": ("pool_size", "strides", "padding"),
    "Dropout": ("rate",),
    "Dense": ("units", "activation"),
    "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
    "Flatten": (),
}


def _seed_model(keras, input_shape=(28, 28, 1), num_classes=10):
    """The seed's `model.add(...)` lines, verbatim but for the `keras.layers` prefix."""
    from keras.layers import BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
    from keras.regularizers import l2

    model = keras.Sequential()
    model.add(keras.Input(shape=input_shape))
    model.add(Conv2D(64, kernel_size=(3, 3), activation="relu", kernel_regularizer=l2(0.01)))
    model.add(BatchNormalization())
    model.add(Conv2D(64, (3, 3), activation="relu", kernel_regularizer=l2(0.01)))
    model.add(BatchNormalization())
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Conv2D(128, (3, 3), activation="relu", kernel_regularizer=l2(0.01)))
    model.add(BatchNormalization())
    model.add(Conv2D(128, (3, 3), activation="relu", kernel_regularizer=l2(0.01)))
    model.add(BatchNormalization())
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(BatchNormalization())
    model.add(MaxPooling2D(pool_size=(2, 2)))

    model.add(Dropout(0.25))
    model.add(Flatten())
    model.add(Dense(256, activation="relu"))
    model.add(Dropout(0.5))

    model.add(Dense(num_classes, activation="softmax"))
    return model


def _seed_2x2_model(keras):
    """The notes' second example: its two lines replace the first two convolutions."""
    from keras.layers import Conv2D

    reference = _seed_model(keras)
    model = keras.Sequential()
    model.add(keras.Input(shape=(28, 28, 1)))
    model.add(Conv2D(64, kernel_size=(2, 2), activation="relu"))
    model.add(Conv2D(128, (3, 3), activation="relu"))
    # The rest as in seed: from the first BatchNormalization after the second convolution.
    for layer in reference.layers[3:]:
        model.add(layer.__class__.from_config(layer.get_config()))
    return model


def _regulariser(layer):
    reg = getattr(layer, "kernel_regularizer", None)
    if reg is None:
        return None
    return type(reg).__name__, round(float(reg.get_config()["l2"]), 8)


def _compare(ours, theirs):
    assert len(ours.layers) == len(theirs.layers), (len(ours.layers), len(theirs.layers))
    for i, (a, b) in enumerate(zip(ours.layers, theirs.layers, strict=True), 1):
        kind = type(b).__name__
        assert type(a).__name__ == kind, f"layer {i}: {type(a).__name__} != {kind}"
        ca, cb = a.get_config(), b.get_config()
        for arg in _ARGS[kind]:
            assert ca[arg] == cb[arg], f"layer {i} {kind}.{arg}: ours {ca[arg]} seed {cb[arg]}"
        assert _regulariser(a) == _regulariser(b), (i, _regulariser(a), _regulariser(b))
        assert a.count_params() == b.count_params(), (i, a.count_params(), b.count_params())
        assert tuple(a.output.shape) == tuple(b.output.shape), (i, a.output.shape, b.output.shape)
        # Nothing else differs either (names aside).
        ca.pop("name"), cb.pop("name")
        assert ca == cb, f"layer {i} {kind}: {ca} != {cb}"


def _counts(model):
    trainable = sum(int(v.numpy().size) for v in model.trainable_weights)
    frozen = sum(int(v.numpy().size) for v in model.non_trainable_weights)
    return trainable + frozen, trainable, frozen


def test_seed_preset_equals_the_seed_code():
    import keras

    ours = build_model(load_arch("seed"), seed=0)
    theirs = _seed_model(keras)
    _compare(ours, theirs)
    assert _counts(ours) == (394_954, 393_930, 1_024), _counts(ours)
    assert _counts(ours) == _counts(theirs)
    conv = [layer for layer in ours.layers if type(layer).__name__ == "Conv2D"]
    assert [_regulariser(c) for c in conv] == [("L2", 0.01)] * 4
    assert ours.layers[-1].get_config()["activation"] == "softmax"


def test_seed_2x2_preset_equals_the_notes_second_example():
    import keras

    ours = build_model(load_arch("seed-2x2"), seed=0)
    theirs = _seed_2x2_model(keras)
    _compare(ours, theirs)
    first = ours.layers[0].get_config()
    assert (first["filters"], tuple(first["kernel_size"])) == (64, (2, 2))
    assert _counts(ours) == _counts(theirs), (_counts(ours), _counts(theirs))


def test_compile_uses_the_seed_settings():
    import keras

    model = compile_model(build_model(load_arch("seed"), seed=0), learning_rate=0.0005)
    assert isinstance(model.optimizer, keras.optimizers.Adam), type(model.optimizer)
    lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert abs(lr - 0.0005) < 1e-9, lr
    config = model.get_compile_config()
    assert config["loss"] == "categorical_crossentropy", config["loss"]
    assert config["metrics"] == ["accuracy"], config["metrics"]
    assert TrainOptions().lr == 0.0005


def test_schedule_matches_the_seeds_compounding_function():
    def scheduler(epoch, lr):  # the seed's own
        if epoch < 10:
            return lr
        return lr * 0.9

    lr = base = 0.0005
    for epoch in range(25):
        lr = scheduler(epoch, lr)
        ours = seed_learning_rate(epoch, base)
        assert abs(ours - lr) < 1e-15, f"epoch {epoch}: ours {ours} seed {lr}"


@pytest.mark.parametrize(
    ("labels", "enabled", "expected"),
    [
        (tuple("0123456789"), True, {i: 0.5 if i in (1, 7) else 1.0 for i in range(10)}),
        (tuple("0123456789"), False, None),
        (("cat", "dog"), True, None),
    ],
)
def test_class_weights(labels, enabled, expected):
    weights, note = class_weights_for(labels, enabled)
    assert weights == expected, (weights, note)
    assert dict(SEED_CLASS_WEIGHTS) == {1: 0.5, 7: 0.5}
    if labels == ("cat", "dog"):
        assert "1.0" in note and "0-9" in note, note
