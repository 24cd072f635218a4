"""The augmentation's ranges, measured on a synthetic image of known geometry.

The image has four channels, each holding one Gaussian dot at a known point. After a transform the
dots' centroids give four point pairs, from which the sampling map x_in = L x_out + b is fitted;
L is decomposed into rotation, shear, per-axis zoom and flip, b into the shift. The same
estimator measures the tf.data pipeline and the legacy `ImageDataGenerator`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnedge.train.augment import (
    ROTATION_DEGREES,
    SHEAR_DEGREES,
    SHIFT_FRACTION,
    ZOOM_RANGE,
    build_augmenter,
    keras_dataset,
    legacy_flow,
)

SIZE = 64
CENTRE = (SIZE - 1) / 2
# (x, y) of the four dots; not collinear, so the affine map is determined.
POINTS = np.array([(-10, -10), (10, -10), (-10, 10), (8, 10)], dtype=np.float64) + CENTRE
SIGMA = 1.5
# Measurement error of the estimator (bilinear resampling of 1.5-pixel dots): measured about
# 0.01 deg, 0.001 zoom and 0.0005 of the side on the seed's pipeline.
ANGLE_TOL, ZOOM_TOL, SHIFT_TOL = 0.1, 0.003, 0.002


def landmark_image() -> np.ndarray:
    """(SIZE, SIZE, 4) float32: one Gaussian dot per channel, at POINTS."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    dots = [np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * SIGMA**2)) for px, py in POINTS]
    return np.stack(dots, axis=-1).astype(np.float32)


def measure(batch: np.ndarray) -> dict[str, np.ndarray]:
    """Per image of a (N, SIZE, SIZE, 4) batch: angle (deg), zoom x/y, shear, shift x/y, flip."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    mass = batch.sum(axis=(1, 2))  # (N, 4)
    cx = (batch * xx[None, :, :, None]).sum(axis=(1, 2)) / mass
    cy = (batch * yy[None, :, :, None]).sum(axis=(1, 2)) / mass
    out: dict[str, list[float]] = {
        k: [] for k in ("angle", "zx", "zy", "shear", "tx", "ty", "flip")
    }
    centre = np.array([CENTRE, CENTRE])
    for n in range(len(batch)):
        design = np.column_stack([cx[n], cy[n], np.ones(4)])  # (4, 3)
        solution, *_ = np.linalg.lstsq(design, POINTS, rcond=None)  # (3, 2)
        lin, offset = solution[:2].T, solution[2]  # x_in = lin @ x_out + offset
        fx = 1.0 if np.linalg.det(lin) > 0 else -1.0
        theta = math.atan2(fx * lin[1, 0], fx * lin[0, 0])
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        rest = rot.T @ lin  # shear @ zoom @ flip: [[fx zx, s zy], [0, zy]]
        shift = rot.T @ (lin @ centre + offset - centre)
        out["angle"].append(math.degrees(theta))
        out["zx"].append(abs(rest[0, 0]))
        out["zy"].append(rest[1, 1])
        out["shear"].append(rest[0, 1] / rest[1, 1])
        out["tx"].append(abs(shift[0]) / SIZE)
        out["ty"].append(abs(shift[1]) / SIZE)
        out["flip"].append(float(fx < 0))
    return {k: np.asarray(v) for k, v in out.items()}


def _check_seed_ranges(m: dict[str, np.ndarray], flip: bool) -> None:
    n = len(m["angle"])
    angle = np.abs(m["angle"])
    assert angle.max() <= ROTATION_DEGREES + ANGLE_TOL, f"rotation up to {angle.max():.2f} deg"
    assert angle.max() >= 0.85 * ROTATION_DEGREES, f"rotation only up to {angle.max():.2f} deg"
    for axis in ("tx", "ty"):
        top = m[axis].max()
        assert top <= SHIFT_FRACTION + SHIFT_TOL, f"{axis} shift up to {top:.4f} of the side"
        assert top >= 0.85 * SHIFT_FRACTION, f"{axis} shift only up to {top:.4f} of the side"
    for axis in ("zx", "zy"):
        low, high = m[axis].min(), m[axis].max()
        assert low >= 1 - ZOOM_RANGE - ZOOM_TOL, f"{axis} zoom down to {low:.4f}"
        assert high <= 1 + ZOOM_RANGE + ZOOM_TOL, f"{axis} zoom up to {high:.4f}"
        assert low <= 1 - 0.8 * ZOOM_RANGE and high >= 1 + 0.8 * ZOOM_RANGE, (axis, low, high)
    corr = float(np.corrcoef(m["zx"], m["zy"])[0, 1])
    assert abs(corr) < 0.25, f"zoom x and y correlate ({corr:.3f}); they must be independent"
    gap = float(np.mean(np.abs(m["zx"] - m["zy"])))
    assert gap > 0.03, f"zoom x and y differ by only {gap:.4f} on average"
    # Shear 0.2 degrees is a coefficient of 0.0035: far below a unit mistake (0.2 or 11 deg).
    shear = float(np.abs(m["shear"]).max())
    assert shear < 0.02, f"shear coefficient up to {shear:.4f}"
    flipped = float(m["flip"].mean())
    if flip:
        assert 0.35 < flipped < 0.65, f"{flipped:.2%} flipped with --flip over {n} draws"
    else:
        assert flipped == 0.0, f"{flipped:.2%} flipped with --no-flip"


def _pipeline_draws(n: int, flip: bool, seed: int = 0) -> np.ndarray:
    """n augmented copies of the landmark image through the real tf.data pipeline."""
    x = np.repeat(landmark_image()[None], 200, axis=0)
    y = np.zeros((200, 2), np.float32)
    batches = keras_dataset(x, y, batch_size=100, flip=flip, seed=seed).take(n // 100)
    return np.concatenate([images.numpy() for images, _ in batches])


def test_estimator_is_exact_on_a_known_transform():
    import keras

    img = landmark_image()[None]
    zoom = keras.layers.RandomZoom((0.05, 0.05), (-0.08, -0.08), fill_mode="nearest")
    m = measure(keras.ops.convert_to_numpy(zoom(img, training=True)))
    assert abs(m["zx"][0] - 0.92) < 0.002 and abs(m["zy"][0] - 1.05) < 0.002, m
    shift = keras.layers.RandomTranslation((0.05, 0.05), (-0.08, -0.08), fill_mode="nearest")
    m = measure(keras.ops.convert_to_numpy(shift(img, training=True)))
    assert abs(m["tx"][0] - 0.08) < 0.002 and abs(m["ty"][0] - 0.05) < 0.002, m


@pytest.mark.parametrize("flip", [True, False])
def test_tf_data_pipeline_has_the_seed_ranges(flip):
    m = measure(_pipeline_draws(400 if flip else 200, flip=flip))
    _check_seed_ranges(m, flip)


def test_legacy_generator_has_the_same_ranges():
    x = np.repeat(landmark_image()[None], 300, axis=0)
    flow = legacy_flow(x, np.zeros((300, 2), np.float32), batch_size=300, flip=True, seed=0)
    images, _ = next(iter(flow))
    _check_seed_ranges(measure(np.asarray(images)), flip=True)


def test_a_wrong_rotation_unit_is_caught():
    """Negative control: RandomRotation(radians(10)) (radians taken for turns) fails the bound."""
    import keras

    x = np.repeat(landmark_image()[None], 100, axis=0)
    wrong = keras.layers.RandomRotation(math.radians(ROTATION_DEGREES), fill_mode="nearest", seed=0)
    angle = np.abs(measure(keras.ops.convert_to_numpy(wrong(x, training=True)))["angle"])
    assert angle.max() > ROTATION_DEGREES + ANGLE_TOL, angle.max()


def test_shear_is_tan_of_0_2_degrees_about_the_centre():
    import keras

    augmenter = build_augmenter(flip=False, seed=0)
    shear = next(layer for layer in augmenter.layers if isinstance(layer, keras.layers.RandomShear))
    coefficient = math.tan(math.radians(SHEAR_DEGREES))
    batch = np.repeat(landmark_image()[None], 2000, axis=0)
    drawn = keras.ops.convert_to_numpy(shear.get_random_transformation(batch)["shear_factor"])
    sx, sy = np.abs(drawn[:, 0]), np.abs(drawn[:, 1])
    assert sx.max() <= coefficient + 1e-9, f"x shear up to {sx.max():.6f}, limit {coefficient:.6f}"
    assert sx.max() >= 0.95 * coefficient, f"x shear only up to {sx.max():.6f}"
    assert sy.max() == 0.0, f"the generator shears x only; y shear up to {sy.max()}"
    # A large fixed shear shows the fixed line: the centre stays, points above and below move
    # in opposite directions by s * (y - centre).
    s = 0.2
    image = landmark_image()[None]
    out = keras.ops.convert_to_numpy(
        shear.transform_images(image, {"shear_factor": np.array([[s, 0.0]], np.float32)})
    )
    m = measure(out)
    assert abs(m["shear"][0] - s) < 0.005, m["shear"]
    assert m["tx"][0] < 0.002, f"the centre moved by {m['tx'][0] * SIZE:.3f} px"
