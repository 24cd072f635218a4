"""The shape survival check: refusals with exit code 2 before any conversion, and 20x20 working."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cnnedge.cli import build_app
from cnnedge.errors import ShapeError
from cnnedge.export.shapecheck import plan_shapes
from cnnedge.package import Package


def _output(result) -> str:
    return result.output  # Click 8.2+: stdout and stderr interleaved


def _seed_metadata(shape=(28, 28, 1)) -> dict:
    from cnnedge.arch import load_arch

    spec = load_arch("seed").with_input_shape(shape)
    return {
        "architecture": spec.to_dict(),
        "input_shape": list(shape),
        "labels": [str(i) for i in range(10)],
    }


def test_seed_refuses_8x8_naming_layer_shapes_and_minimum(trained_package):
    result = CliRunner().invoke(
        build_app(), ["export", str(trained_package), "--input-shape", "8x8x1"]
    )
    text = _output(result)
    assert result.exit_code == 2, text
    assert "input 8x8 collapses at layer 6 Conv2D(3x3): 2x2 -> 0x0" in text, text
    assert "needs at least 20x20" in text, text
    assert "Traceback" not in text


def test_one_pooling_too_many_is_refused(package_copy):
    meta_path = package_copy / "metadata.json"
    meta = json.loads(meta_path.read_text())
    layers = meta["architecture"]["layers"]
    layers.insert(5, {"type": "MaxPooling2D", "pool_size": [2, 2]})  # a second pool after layer 5
    meta_path.write_text(json.dumps(meta))
    before = sorted(p.name for p in package_copy.iterdir())
    result = CliRunner().invoke(build_app(), ["export", str(package_copy), "--format", "onnx"])
    text = _output(result)
    assert result.exit_code == 2, text
    assert "input 28x28 collapses at layer 13 MaxPooling2D(2x2): 1x1 -> 0x0" in text, text
    assert "this architecture needs at least 36x36" in text, text
    assert sorted(p.name for p in package_copy.iterdir()) == before  # nothing converted


def test_shape_that_survives_but_changes_dense_weights_says_retrain():
    with pytest.raises(ShapeError) as info:
        plan_shapes(_seed_metadata(), (36, 36, 1))  # 3x3x128 at Flatten instead of 2x2x128
    message = str(info.value)
    assert "input 36x36x1 passes every layer of seed" in message, message
    assert "layer 15 Dense(256) would need 295,168 weights (input 1152)" in message, message
    assert "trained 131,328 (input 512)" in message, message
    assert "cnnedge train --input-shape 36x36x1" in message, message
    assert info.value.exit_code == 2


def test_channel_change_is_refused():
    with pytest.raises(ShapeError, match=r"layer 1 Conv2D\(3x3\).*input 28x28x3"):
        plan_shapes(_seed_metadata(), (28, 28, 3))


def test_shape_with_the_same_weights_is_accepted():
    plan = plan_shapes(_seed_metadata(), (29, 29, 1))  # 29 -> ... -> 2x2x128, like 28
    assert plan.reshaped and plan.rows[-1].output_shape == (10,)
    assert plan_shapes(_seed_metadata(), None).export_shape == (28, 28, 1)


@pytest.mark.slow
def test_reshaped_export_reuses_weights_and_verifies(package_copy):
    from cnnedge.export.api import export_package

    (result,) = export_package(package_copy, ["onnx"], input_shape=(29, 29, 1))
    assert result.verification.max_abs_diff <= 1e-4, result.verification
    record = Package.load(package_copy).files["model.onnx"]
    assert record["input_shape"] == [29, 29, 1], record


@pytest.fixture(scope="module")
def package_20x20(tmp_path_factory):
    """A seed-architecture package built for 20x20x1, fitted a few steps on resized digits."""
    import keras
    import tensorflow as tf

    from cnnedge import __version__
    from cnnedge.arch import load_arch
    from cnnedge.package import file_record, write_metadata
    from cnnedge.train.data import load_default, load_npz
    from cnnedge.train.model import build_model, compile_model

    tmp = tmp_path_factory.mktemp("p20")
    digits = load_default()
    arrays = {
        "x_train": tf.image.resize(digits.x_train, (20, 20)).numpy(),
        "y_train": digits.y_train,
        "x_test": tf.image.resize(digits.x_test, (20, 20)).numpy(),
        "y_test": digits.y_test,
    }
    np.savez(tmp / "digits20.npz", **arrays)
    data = load_npz(tmp / "digits20.npz", (20, 20, 1))
    spec = load_arch("seed").with_input_shape((20, 20, 1))
    model = compile_model(build_model(spec, seed=0))
    y = keras.utils.to_categorical(data.y_train[:1600], 10)
    model.fit(data.x_train[:1600], y, batch_size=16, epochs=1, verbose=0)
    root = tmp / "seed20"
    root.mkdir()
    model.save(root / "model.keras")
    write_metadata(
        root,
        {
            "name": "seed20",
            "cnnedge_version": __version__,
            "architecture": spec.to_dict(),
            "input_shape": [20, 20, 1],
            "labels": list(data.labels),
            "data": dict(data.meta),
            "files": {"model.keras": file_record(root / "model.keras")},
        },
    )
    return root, arrays


@pytest.mark.slow
def test_20x20_package_exports_and_runs(package_20x20):
    import onnxruntime as ort

    root, arrays = package_20x20
    result = CliRunner().invoke(build_app(), ["export", str(root), "--format", "onnx"])
    assert result.exit_code == 0, _output(result)
    assert "input 20x20x1 survives all 17 layers" in result.output, result.output
    session = ort.InferenceSession(str(root / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 20, 20, 1]
    probs = session.run(None, {"input": arrays["x_test"][:50]})[0]
    assert probs.shape == (50, 10)
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5), probs.sum(1)
    ver = Package.load(root).files["model.onnx"]["verification"]
    assert ver["max_abs_diff"] <= 1e-4 and ver["top1_agreement"] == 1.0, ver
