"""Every format of one `all` export: parity with Keras, runtime contract and recorded figures."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cnnedge.package import Package

pytestmark = pytest.mark.slow


def _tflite(path):
    from cnnedge.export.runners import TFLiteRunner

    return TFLiteRunner(path)


def test_every_format_is_written_verified_and_listed(all_exported):
    root, results = all_exported
    assert list(results) == ["onnx", "onnx-int8", "tflite", "tflite-fp16", "tflite-int8", "triton"]
    pkg = Package.load(root)
    for fmt, result in results.items():
        for rel in result.files:
            pkg.require(rel)  # present, listed, sha256 matches
            ver = pkg.files[rel]["verification"]
            assert ver["passed"] is True and ver["images"] == 1000, (fmt, rel, ver)
    assert pkg.metadata["export"]["opset"] == 17
    assert pkg.metadata["export"]["calibration_images"] == 300


@pytest.mark.parametrize("fmt", ["onnx", "tflite", "triton"])
def test_float_exports_match_keras_within_1e4(all_exported, fmt):
    v = all_exported[1][fmt].verification
    assert v.max_abs_diff <= 1e-4, f"{fmt}: max |p - p_keras| = {v.max_abs_diff:.3g}"
    assert v.top1_agreement == 1.0, f"{fmt}: top-1 agreement {v.top1_agreement:.4f}"


def test_tflite_float_parity_measured_here(all_exported, held_out, keras_probs):
    probs = _tflite(all_exported[0] / "model.tflite").predict(held_out[0], batch_size=50)
    diff = float(np.max(np.abs(probs - keras_probs)))
    assert diff <= 1e-4, f"max |tflite - keras| = {diff:.3g}"
    assert np.array_equal(probs.argmax(1), keras_probs.argmax(1))


def test_tflite_fp16_halves_the_size_and_keeps_accuracy(all_exported, held_out, keras_probs):
    root = all_exported[0]
    probs = _tflite(root / "model.fp16.tflite").predict(held_out[0])
    diff = float(np.max(np.abs(probs - keras_probs)))
    # float16 weights keep ~3 significant digits: close, but not within float32's 1e-4.
    assert diff <= 1e-2, f"max |fp16 - keras| = {diff:.3g}"
    acc = float(np.mean(probs.argmax(1) == held_out[1]))
    keras_acc = float(np.mean(keras_probs.argmax(1) == held_out[1]))
    assert keras_acc - acc <= 0.01, f"fp16 accuracy {acc:.4f} vs keras {keras_acc:.4f}"
    ratio = (root / "model.tflite").stat().st_size / (root / "model.fp16.tflite").stat().st_size
    assert 1.8 < ratio < 2.2, f"fp32/fp16 size ratio {ratio:.2f}"


def test_tflite_int8_is_full_integer_and_accurate(all_exported, held_out, keras_probs):
    root = all_exported[0]
    runner = _tflite(root / "model.int8.tflite")  # default resolver, no Flex delegate
    q = runner.quantization()
    assert q["input"]["dtype"] == "int8" and q["output"]["dtype"] == "int8", q
    assert Package.load(root).files["model.int8.tflite"]["input"] == q["input"]
    probs = runner.predict(held_out[0])
    acc = float(np.mean(probs.argmax(1) == held_out[1]))
    keras_acc = float(np.mean(keras_probs.argmax(1) == held_out[1]))
    assert keras_acc - acc <= 0.01, f"int8 tflite accuracy {acc:.4f} vs keras {keras_acc:.4f}"
    ratio = (root / "model.tflite").stat().st_size / (root / "model.int8.tflite").stat().st_size
    assert ratio > 3.0, f"fp32/int8 size ratio {ratio:.2f}"


def test_tflite_int8_uses_builtin_int8_ops_only(all_exported):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(all_exported[0] / "model.int8.tflite"))
    ops = {d["op_name"] for d in interpreter._get_ops_details()}
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), sorted(ops)
    assert "CONV_2D" in ops and "FULLY_CONNECTED" in ops, sorted(ops)
    tensors = interpreter.get_tensor_details()
    float_acts = [
        t["name"] for t in tensors if t["dtype"] == np.float32 and len(t["shape_signature"]) > 1
    ]
    assert float_acts == [], float_acts[:5]


def test_triton_repository_layout_and_config(all_exported):
    root = all_exported[0]
    base = root / "triton" / "seed"
    files = sorted(str(p.relative_to(root / "triton")) for p in (root / "triton").rglob("*"))
    assert files == ["seed", "seed/1", "seed/1/model.onnx", "seed/config.pbtxt", "seed/labels.txt"]
    assert (base / "1" / "model.onnx").read_bytes() == (root / "model.onnx").read_bytes()
    assert (base / "labels.txt").read_text().split() == [str(i) for i in range(10)]
    config = (base / "config.pbtxt").read_text()
    fields = {
        "name": r'^name: "seed"$',
        "platform": r'^platform: "onnxruntime_onnx"$',
        "max_batch_size": r"^max_batch_size: 64$",
        "input": r'input \[\s*\{\s*name: "input"\s*data_type: TYPE_FP32\s*format: FORMAT_NHWC'
        r"\s*dims: \[ 28, 28, 1 \]\s*\}\s*\]",
        "output": r'output \[\s*\{\s*name: "probabilities"\s*data_type: TYPE_FP32\s*'
        r'dims: \[ 10 \]\s*label_filename: "labels.txt"\s*\}\s*\]',
        "dynamic_batching": r"dynamic_batching \{[^}]*max_queue_delay_microseconds: \d+",
    }
    missing = [k for k, pattern in fields.items() if not re.search(pattern, config, re.M)]
    assert missing == [], f"config.pbtxt lacks {missing}:\n{config}"
    assert config.count("{") == config.count("}") and config.count("[") == config.count("]")


def test_triton_model_honours_its_config(all_exported, held_out, keras_probs):
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(all_exported[0] / "triton" / "seed" / "1" / "model.onnx"),
        providers=["CPUExecutionProvider"],
    )
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.shape[1:], inp.type) == ("input", [28, 28, 1], "tensor(float)")
    assert (out.name, out.shape[1:]) == ("probabilities", [10])
    for batch in (1, 64):  # 64 = max_batch_size
        probs = session.run(None, {"input": held_out[0][:batch]})[0]
        diff = float(np.max(np.abs(probs - keras_probs[:batch])))
        assert diff <= 1e-4, f"batch {batch}: max |triton onnx - keras| = {diff:.3g}"


def test_exported_files_are_readable_by_other_users(all_exported):
    # A Triton container often runs as another user than the one who exported.
    root, results = all_exported
    written = [rel for r in results.values() for rel in r.files]
    modes = {rel: oct((root / rel).stat().st_mode & 0o777) for rel in written}
    unreadable = {rel: mode for rel, mode in modes.items() if not int(mode, 8) & 0o004}
    assert len(written) == 8 and unreadable == {}, modes
