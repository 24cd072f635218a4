"""The seed's augmentation, as a `tf.data` pipeline of Keras layers or the legacy generator.

The seed writes `ImageDataGenerator(rotation_range=10, width_shift_range=0.1,
height_shift_range=0.1, zoom_range=0.1, shear_range=0.2, horizontal_flip=True)`. Keras 3's
preprocessing layers take other units, mapped here (checked against the Keras 3.15 source):

- RandomRotation(factor) takes a fraction of a full turn: 10 degrees is 10 / 360.
- RandomTranslation(0.1, 0.1) shifts by up to 10% of height and width, as the generator does.
- RandomZoom samples a factor 1 + u, u in [lower, upper]; positive u zooms out (the layer samples
  a larger region), the generator's zx > 1 does the same. The range is symmetric, so (-0.1, 0.1)
  gives the generator's [0.9, 1.1]; `width_factor` is set so the two axes are drawn independently.
- RandomShear takes a coefficient (x_in = x + s * y), not degrees, and shears about the top-left
  corner. The generator shears x by -sin(angle) * y about the centre, angle in [-0.2, 0.2]
  degrees: the coefficient is tan(0.2 deg) (0.00349; sin and tan agree to 1e-9 here) and
  `CentredShear` (from `_centred_shear_class`) moves the fixed row to the centre.
- RandomFlip("horizontal") for horizontal_flip; fill mode "nearest" everywhere, bilinear sampling
  as the generator's order=1.

Each layer resamples separately (the generator composes one matrix), which differs from it only
by interpolation error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from cnnedge.errors import UsageError

MODES = ("keras", "legacy", "none")
ROTATION_DEGREES = 10.0
SHIFT_FRACTION = 0.1
ZOOM_RANGE = 0.1
SHEAR_DEGREES = 0.2
FILL_MODE = "nearest"


def check_mode(mode: str) -> str:
    """Return `mode` if it is one of MODES, else raise a `UsageError` saying which exist."""
    if mode not in MODES:
        raise UsageError(f"--augment {mode!r} is not a mode; use one of {', '.join(MODES)}")
    return mode


def seed_generator_args(flip: bool = True) -> dict[str, Any]:
    """The seed's `ImageDataGenerator` arguments (flip switchable)."""
    return {
        "rotation_range": ROTATION_DEGREES,
        "width_shift_range": SHIFT_FRACTION,
        "height_shift_range": SHIFT_FRACTION,
        "zoom_range": ZOOM_RANGE,
        "shear_range": SHEAR_DEGREES,
        "horizontal_flip": flip,
        "fill_mode": FILL_MODE,
    }


def build_augmenter(flip: bool = True, seed: int | None = None) -> Any:
    """A `keras.Sequential` of preprocessing layers with the seed's ranges.

    Args:
        flip: include the random horizontal flip (the seed has it on).
        seed: seeds each layer's random generator (each layer gets its own offset).

    Returns:
        The augmenter; call it with `training=True` on a batch (N, H, W, C).
    """
    import keras

    def layer_seed(offset: int) -> int | None:
        return None if seed is None else seed + offset

    layers = [
        keras.layers.RandomRotation(
            ROTATION_DEGREES / 360.0, fill_mode=FILL_MODE, seed=layer_seed(1)
        ),
        keras.layers.RandomTranslation(
            SHIFT_FRACTION, SHIFT_FRACTION, fill_mode=FILL_MODE, seed=layer_seed(2)
        ),
        _centred_shear_class()(
            x_factor=math.tan(math.radians(SHEAR_DEGREES)), fill_mode=FILL_MODE, seed=layer_seed(3)
        ),
        keras.layers.RandomZoom(
            height_factor=(-ZOOM_RANGE, ZOOM_RANGE),
            width_factor=(-ZOOM_RANGE, ZOOM_RANGE),
            fill_mode=FILL_MODE,
            seed=layer_seed(4),
        ),
    ]
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=layer_seed(5)))
    return keras.Sequential(layers, name="seed_augmentation")


def keras_dataset(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    augment: bool = True,
    flip: bool = True,
    seed: int | None = None,
) -> Any:
    """A shuffled, repeated, batched `tf.data.Dataset` of (x, y), augmented per batch.

    Args:
        x: images (N, H, W, C) float32 in [0, 1].
        y: one-hot labels (N, K).
        batch_size: images per batch.
        augment: apply the seed's augmentation (False: shuffle and batch only).
        flip: include the horizontal flip.
        seed: shuffle and augmentation seed.

    Returns:
        An infinite dataset; pass `steps_per_epoch` to `fit`.
    """
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x.astype(np.float32), y.astype(np.float32)))
    data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).repeat()
    data = data.batch(batch_size, drop_remainder=True)
    if augment:
        augmenter = build_augmenter(flip=flip, seed=seed)
        data = data.map(
            lambda images, labels: (augmenter(images, training=True), labels),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return data.prefetch(tf.data.AUTOTUNE)


def legacy_flow(
    x: np.ndarray, y: np.ndarray, batch_size: int, flip: bool = True, seed: int | None = None
) -> Any:
    """The seed's own input: `ImageDataGenerator(...).flow(x, y, batch_size)` (needs scipy)."""
    import tensorflow as tf

    generator = tf.keras.preprocessing.image.ImageDataGenerator(**seed_generator_args(flip))
    return generator.flow(x, y, batch_size=batch_size, shuffle=True, seed=seed)


def endless(flow: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches (x, y) of a legacy flow as float32, forever (the flow reshuffles at each pass)."""
    while True:
        images, labels = next(flow)
        yield images.astype(np.float32), labels.astype(np.float32)


def legacy_dataset(
    x: np.ndarray, y: np.ndarray, batch_size: int, flip: bool = True, seed: int | None = None
) -> Any:
    """The legacy flow as an endless `tf.data.Dataset`, so `fit` treats both modes alike.

    Keras 3 reads a bare flow as a `PyDataset` of ceil(N / batch) batches and, with
    `steps_per_epoch`, stops after one pass ("input ran out of data": the second epoch trains on
    nothing); a plain generator would refuse `class_weight`. A repeated dataset does neither.
    """
    import tensorflow as tf

    flow = legacy_flow(x, y, batch_size, flip=flip, seed=seed)
    signature = (
        tf.TensorSpec((None, *x.shape[1:]), tf.float32),  # (N, H, W, C)
        tf.TensorSpec((None, y.shape[1]), tf.float32),  # (N, K)
    )
    return tf.data.Dataset.from_generator(lambda: endless(flow), output_signature=signature)


def training_input(
    mode: str,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    flip: bool = True,
    seed: int | None = None,
) -> Iterable[Any]:
    """The training input for `fit` in the given mode ("keras", "legacy" or "none")."""
    check_mode(mode)
    if mode == "legacy":
        return legacy_dataset(x, y, batch_size, flip=flip, seed=seed)
    return keras_dataset(x, y, batch_size, augment=mode == "keras", flip=flip, seed=seed)


def _centred_shear_class() -> type:
    """RandomShear with the fixed line through the image centre, as the generator shears."""
    import keras

    class CentredShear(keras.layers.RandomShear):
        # Keras 3.13+ shears in `_transform_images`; 3.12 (the last for Python 3.10) in
        # `_shear_inputs`. Both lead here.
        def _shear_inputs(self, inputs: Any, transformation: Any) -> Any:
            return self._transform_images(inputs, transformation, self.interpolation)

        def _transform_images(self, images: Any, transformation: Any, interpolation: Any) -> Any:
            if transformation is None:
                return images
            ops = self.backend
            unbatched = len(ops.shape(images)) == 3
            if unbatched:
                images = ops.numpy.expand_dims(images, axis=0)
            shape = ops.shape(images)
            last = self.data_format == "channels_last"
            height, width = (shape[1], shape[2]) if last else (shape[2], shape[3])
            s = transformation["shear_factor"]  # (N, 2): x and y coefficients
            cx = (ops.cast(width, s.dtype) - 1.0) / 2.0
            cy = (ops.cast(height, s.dtype) - 1.0) / 2.0
            n = ops.shape(s)[0]
            ones, zeros = ops.numpy.ones((n,), s.dtype), ops.numpy.zeros((n,), s.dtype)
            # x_in = x + sx * (y - cy), y_in = y + sy * (x - cx): shear about the centre.
            matrix = ops.numpy.stack(
                [ones, s[:, 0], -s[:, 0] * cy, s[:, 1], ones, -s[:, 1] * cx, zeros, zeros],
                axis=1,
            )
            outputs = ops.image.affine_transform(
                images,
                transform=ops.cast(matrix, "float32"),
                interpolation=interpolation,
                fill_mode=self.fill_mode,
                fill_value=self.fill_value,
                data_format=self.data_format,
            )
            return ops.numpy.squeeze(outputs, axis=0) if unbatched else outputs

    return CentredShear
