"""The float and int8 ONNX exports of the shared `exported_package` fixture."""

from __future__ import annotations

import numpy as np
import pytest

from cnnedge.package import Package


@pytest.mark.slow
def test_onnx_matches_keras_within_1e4(exported_package, held_out, keras_probs):
    import onnxruntime as ort

    path = Package.load(exported_package).require("model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probs = session.run(["probabilities"], {"input": held_out[0]})[0]
    diff = float(np.max(np.abs(probs - keras_probs)))
    assert diff <= 1e-4, f"max |onnx - keras| = {diff:.3g}"
    agree = float(np.mean(probs.argmax(1) == keras_probs.argmax(1)))
    assert agree == 1.0, f"top-1 agreement {agree:.4f}"


@pytest.mark.slow
def test_onnx_graph_contract(exported_package):
    import onnx

    model = onnx.load(str(exported_package / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    (inp,) = model.graph.input
    (out,) = model.graph.output
    in_dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    out_dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    assert (inp.name, in_dims) == ("input", ["batch", 28, 28, 1]), (inp.name, in_dims)
    assert (out.name, out_dims) == ("probabilities", ["batch", 10]), (out.name, out_dims)
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    # Self-contained: no initializer points at external data.
    external = [t.name for t in model.graph.initializer if t.data_location == 1]
    assert external == [], external


@pytest.mark.slow
def test_metadata_records_hashes_and_figures(exported_package):
    pkg = Package.load(exported_package)
    for name in ("model.onnx", "model.int8.onnx"):
        pkg.require(name)  # size and sha256 match the file
        record = pkg.files[name]
        ver = record["verification"]
        assert ver["passed"] is True, ver
        assert ver["images"] == 1000, ver
        for key in ("max_abs_diff", "top1_agreement", "accuracy", "keras_accuracy"):
            assert isinstance(ver[key], float), (key, ver)
    assert pkg.files["model.onnx"]["verification"]["max_abs_diff"] <= 1e-4
    int8 = pkg.files["model.int8.onnx"]
    assert int8["calibration_images"] == 300, int8
    assert int8["size"] < pkg.files["model.onnx"]["size"] / 3, (
        int8["size"],
        pkg.files["model.onnx"]["size"],
    )


@pytest.mark.slow
def test_int8_onnx_is_quantised_and_accurate(exported_package, held_out, keras_probs):
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(exported_package / "model.int8.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops, sorted(ops)
    session = ort.InferenceSession(
        str(exported_package / "model.int8.onnx"), providers=["CPUExecutionProvider"]
    )
    probs = session.run(None, {"input": held_out[0]})[0]
    acc = float(np.mean(probs.argmax(1) == held_out[1]))
    keras_acc = float(np.mean(keras_probs.argmax(1) == held_out[1]))
    assert keras_acc - acc <= 0.01, f"int8 accuracy {acc:.4f} vs keras {keras_acc:.4f}"
