"""Build the Keras 3 model of an `ArchSpec`, layer for layer, and compile it with the seed's recipe."""

from __future__ import annotations

from typing import Any

from cnnedge.arch import ArchSpec, BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from cnnedge.shapes import check_classifier


def build_model(spec: ArchSpec, seed: int | None = None) -> Any:
    """A `keras.Sequential` for `spec`, after the pure shape check has passed.

    Args:
        spec: the architecture (its input shape and class count included).
        seed: if given, seeds Keras' initialisers so two builds have equal weights.

    Returns:
        The uncompiled model.
    """
    check_classifier(spec)  # refuse a collapsing stack before TensorFlow builds anything
    import keras

    if seed is not None:
        keras.utils.set_random_seed(seed)
    model = keras.Sequential(name=_keras_name(spec.name))
    model.add(keras.Input(shape=spec.input_shape, name="input"))
    for layer in spec.layers:
        model.add(_keras_layer(keras, spec, layer))
    return model


def compile_model(model: Any, learning_rate: float = 0.0005) -> Any:
    """Compile with Adam, categorical cross-entropy on one-hot labels, and accuracy (the seed's)."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def _keras_layer(keras: Any, spec: ArchSpec, layer: Any) -> Any:
    layers, regularizers = keras.layers, keras.regularizers
    if isinstance(layer, Conv2D):
        return layers.Conv2D(
            layer.filters,
            kernel_size=layer.kernel,
            strides=layer.strides,
            padding=layer.padding,
            activation=layer.activation,
            kernel_regularizer=regularizers.l2(layer.l2) if layer.l2 else None,
        )
    if isinstance(layer, BatchNormalization):
        return layers.BatchNormalization()
    if isinstance(layer, MaxPooling2D):
        return layers.MaxPooling2D(
            pool_size=layer.pool_size, strides=layer.strides, padding=layer.padding
        )
    if isinstance(layer, Dropout):
        return layers.Dropout(layer.rate)
    if isinstance(layer, Flatten):
        return layers.Flatten()
    if isinstance(layer, Dense):
        return layers.Dense(
            spec.units(layer),
            activation=layer.activation,
            kernel_regularizer=regularizers.l2(layer.l2) if layer.l2 else None,
        )
    raise TypeError(f"no Keras layer for {layer!r}")


def _keras_name(name: str) -> str:
    # Keras names allow letters, digits, '_' and '-' only.
    return "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in name) or "model"
