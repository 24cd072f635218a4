"""Data sources and every bad-data case: the message names the file and the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cnnedge.errors import DataError
from cnnedge.train.data import load_data, load_default, load_from_metadata


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _good_arrays(n_train=30, n_test=10, shape=(28, 28), classes=3):
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "y_train": np.arange(n_train) % classes,
        "x_test": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "y_test": np.arange(n_test) % classes,
    }


def test_default_split_is_stratified_and_reproducible():
    data = load_default(0.2, seed=0)
    assert data.x_train.shape == (4000, 28, 28, 1) and data.x_test.shape == (1000, 28, 28, 1)
    assert data.x_train.dtype == np.float32
    assert data.x_train.min() >= 0.0 and data.x_train.max() <= 1.0
    assert np.bincount(data.y_test).tolist() == [100] * 10, np.bincount(data.y_test)
    again = load_default(0.2, seed=0)
    assert np.array_equal(data.y_test, again.y_test) and np.array_equal(data.x_test, again.x_test)
    other = load_default(0.2, seed=1)
    assert not np.array_equal(data.y_test, other.y_test)
    assert data.meta["source"] == "default" and data.meta["n_train"] == 4000, data.meta


def test_npz_uint8_three_axes_and_round_trip_through_metadata(tmp_path):
    path = _npz(tmp_path / "d.npz", **_good_arrays())
    data = load_data(str(path), (28, 28, 1))
    assert data.x_train.shape == (30, 28, 28, 1) and data.labels == ("0", "1", "2")
    assert abs(float(data.x_train.max()) - 1.0) < 1e-6, data.x_train.max()
    again = load_from_metadata(data.meta, (28, 28, 1))
    assert np.array_equal(again.x_test, data.x_test) and np.array_equal(again.y_test, data.y_test)


def test_npz_float_four_axes_with_label_names(tmp_path):
    arrays = _good_arrays(shape=(16, 12, 3))
    arrays["x_train"] = arrays["x_train"].astype(np.float32) / 255.0
    arrays["x_test"] = arrays["x_test"].astype(np.float32) / 255.0
    path = _npz(tmp_path / "d.npz", **arrays, labels=np.array(["a", "b", "c", "d"]))
    data = load_data(str(path), (16, 12, 3))
    assert data.labels == ("a", "b", "c", "d")
    assert np.allclose(data.x_test, arrays["x_test"]), "float [0, 1] images must stay as given"


def _bad_npz_cases():
    good = _good_arrays()
    nan = good["x_train"].astype(np.float32)
    nan[3, 1, 1] = np.nan
    return {
        "missing key": (
            {k: v for k, v in good.items() if k != "y_test"},
            "lacks the array(s) y_test",
        ),
        "wrong shape": ({**good, "x_test": good["x_test"][:, :20]}, "x_test holds 20x28x1 images"),
        "label outside": ({**good, "y_test": np.array([0, 1, 2, 7] + [0] * 6)}, "y_test[3] is 7"),
        "negative label": ({**good, "y_train": -good["y_train"]}, "outside the classes"),
        "count mismatch": ({**good, "y_train": good["y_train"][:-1]}, "29 labels for 30 images"),
        "nan pixels": ({**good, "x_train": nan}, "image 3 holds NaN"),
        "fractional label": ({**good, "y_test": good["y_test"] + 0.5}, "whole class indices"),
        "out of range pixels": ({**good, "x_test": good["x_test"] * 2.0 - 300}, "pixels span"),
    }


@pytest.mark.parametrize("case", list(_bad_npz_cases()))
def test_bad_npz_is_refused_naming_the_file(tmp_path, case):
    arrays, expected = _bad_npz_cases()[case]
    path = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError) as info:
        load_data(str(path), (28, 28, 1))
    message = str(info.value)
    assert str(path) in message and expected in message, message


def test_corrupt_and_missing_files(tmp_path):
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(DataError, match=r"corrupt\.npz: not a readable .npz"):
        load_data(str(corrupt))
    single = tmp_path / "single.npy"
    np.save(single, np.zeros((3, 28, 28)))
    with pytest.raises(DataError, match=r"single\.npy: holds a single array"):
        load_data(str(single))
    missing = tmp_path / "nowhere.npz"
    with pytest.raises(DataError, match=r"nowhere\.npz\'?: no such file or folder"):
        load_data(str(missing))


def test_default_data_is_redrawn_for_another_input_shape():
    from cnnedge.preprocess import bounding_box, centre_of_mass

    base = load_data("default")
    data = load_data("default", (32, 32, 3))
    assert data.x_train.shape == (4000, 32, 32, 3) and data.x_test.shape == (1000, 32, 32, 3)
    assert (data.y_train == base.y_train).all() and (data.y_test == base.y_test).all()
    assert data.meta["converted_from"] == [28, 28, 1]
    for img in data.x_test[:50]:
        gray = img[..., 0]
        top, left, bottom, right = bounding_box(gray)
        # The MNIST box of 20 in 28, scaled: 23 of 32; centred by centre of mass.
        assert bottom - top <= 23 and right - left <= 23, (top, left, bottom, right)
        cy, cx = centre_of_mass(gray)
        assert abs(cy - 15.5) <= 1.0 and abs(cx - 15.5) <= 1.0, (cy, cx)
        assert (img[..., 0] == img[..., 2]).all()


def test_image_folder_loads_through_the_shared_preprocessing(tmp_path, image_folder):
    from cnnedge.preprocess import PreprocessConfig, preprocess_image

    root = image_folder(tmp_path / "imgs")
    data = load_data(str(root), (28, 28, 1), test_fraction=0.2, seed=0)
    assert data.labels == ("bar", "block", "wide")
    assert len(data.x_train) == 12 and len(data.x_test) == 3, (len(data.x_train), len(data.x_test))
    assert np.bincount(data.y_test).tolist() == [1, 1, 1]
    # The same pixels the server would compute for the same file.
    expected = preprocess_image((root / "bar" / "0.png").read_bytes(), PreprocessConfig())
    assert any(np.array_equal(x, expected) for x in [*data.x_train, *data.x_test])
    again = load_from_metadata(data.meta, (28, 28, 1))
    assert np.array_equal(again.x_test, data.x_test)
    big = load_data(str(root), (40, 40, 1))
    assert big.x_train.shape[1:] == (40, 40, 1), big.x_train.shape


def test_image_folder_bad_cases(tmp_path, image_folder, png):
    root = image_folder(tmp_path / "empty_class")
    (root / "zzz").mkdir()
    (root / "zzz" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"zzz: class folder 'zzz' has no PNG or JPEG images"):
        load_data(str(root))

    root = image_folder(tmp_path / "corrupt")
    bad = root / "block" / "9.png"
    bad.write_bytes(png((8, 8, 32, 32))[:60])  # truncated
    with pytest.raises(DataError) as info:
        load_data(str(root))
    assert str(bad) in str(info.value) and "corrupt" in str(info.value), str(info.value)

    root = image_folder(tmp_path / "blank")
    blank = root / "wide" / "7.png"
    blank.write_bytes(png(None))
    with pytest.raises(DataError) as info:
        load_data(str(root))
    assert str(blank) in str(info.value) and "blank" in str(info.value), str(info.value)

    one = tmp_path / "one"
    (one / "only").mkdir(parents=True)
    with pytest.raises(DataError, match=r"at least 2"):
        load_data(str(one))

    root = image_folder(tmp_path / "changed")
    data = load_data(str(root))
    (root / "bar" / "0.png").write_bytes(png((10, 5, 30, 35)))
    with pytest.raises(DataError, match=r"changed since training"):
        load_from_metadata(data.meta, (28, 28, 1))


def test_keras_mnist_offline_is_a_clear_error_not_a_traceback(tmp_path):
    import os
    import subprocess
    import sys

    # An empty Keras cache (read at import, hence a subprocess) and a proxy that refuses:
    # the download fails fast wherever this runs, online or not.
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "keras"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        env[var] = "http://127.0.0.1:9"
    env.pop("no_proxy", None), env.pop("NO_PROXY", None)
    cmd = [
        sys.executable,
        "-m",
        "cnnedge",
        "train",
        "--data",
        "mnist",
        "--out",
        str(tmp_path / "o"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "error: --data mnist: could not download MNIST" in done.stderr, done.stderr[-2000:]
    assert "--data default" in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]


def test_bad_test_fraction():
    with pytest.raises(DataError, match=r"--test-fraction 1\.5 is outside"):
        load_data("default", test_fraction=1.5)
