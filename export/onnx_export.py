"""Keras to ONNX (tf2onnx from a tf.function), static int8 QDQ quantisation, Triton repositories."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"
BATCH_DIM = "batch"


def serving_function(model: Any, input_shape: Sequence[int]) -> Any:
    """A `tf.function` running `model` in inference mode on NHWC float32 batches of any size.

    Args:
        model: the Keras model.
        input_shape: (H, W, C) without the batch axis.

    Returns:
        The traced function; its output is the dict {"probabilities": (N, classes)}.
    """
    import tensorflow as tf

    spec = tf.TensorSpec((None, *input_shape), tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def serve(x: Any) -> dict[str, Any]:
        return {OUTPUT_NAME: model(x, training=False)}

    return serve


def keras_to_onnx(model: Any, input_shape: Sequence[int], opset: int = 17) -> Any:
    """Convert a Keras 3 model to a checked, self-contained ONNX model.

    tf2onnx's `from_keras` fails on Keras 3 (KeyError on keras_tensor names), so this converts the
    traced serving function instead.

    Args:
        model: the Keras model.
        input_shape: (H, W, C).
        opset: the ONNX opset.

    Returns:
        The `onnx.ModelProto`: input "input" (batch, H, W, C), output "probabilities" (batch, K).
    """
    import onnx
    import tf2onnx

    fn = serving_function(model, input_shape)
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=opset)
    # tf2onnx names the unknown batch axis unk__N; a stable name documents the contract.
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    proto.producer_name = "cnnedge"
    onnx.checker.check_model(proto, full_check=True)
    return proto


def save_onnx(proto: Any, path: str | Path) -> None:
    """Write an ONNX model as one file (weights inline, no external data)."""
    import onnx

    onnx.save_model(proto, str(path), save_as_external_data=False)


class _Calibration:
    """An onnxruntime `CalibrationDataReader` over NHWC images in small batches."""

    def __init__(self, images: np.ndarray, batch_size: int = 32) -> None:
        self._batches = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._batches):
            return None
        batch = self._batches[self._next]
        self._next += 1
        return {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}

    def rewind(self) -> None:
        self._next = 0


def quantize_onnx_int8(float_path: str | Path, out_path: str | Path, images: np.ndarray) -> None:
    """Static QDQ quantisation (uint8 activations, per-channel int8 weights) calibrated on `images`.

    Args:
        float_path: the float32 ONNX model.
        out_path: where to write the quantised model.
        images: calibration images (N, H, W, C) float32, a few hundred from the training split.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="cnnedge-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Folds constants and infers shapes, as onnxruntime recommends before static quantisation.
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out_path),
            _Calibration(images),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            # U8S8, onnxruntime's default: its x86 kernels are fastest with uint8 activations
            # (measured on this 2-core x86: 2.2x float throughput at batch 64; S8S8 1.8x).
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"WeightSymmetric": True},
        )
    onnx.checker.check_model(str(out_path), full_check=True)


def triton_config(
    name: str, input_shape: Sequence[int], num_classes: int, max_batch_size: int = 64
) -> str:
    """The `config.pbtxt` of a Triton/KServe model that serves the float ONNX file.

    Args:
        name: the model name (also the folder name in the repository).
        input_shape: (H, W, C), the dims without the batch axis.
        num_classes: the length of the probability vector.
        max_batch_size: the largest batch the dynamic batcher forms.

    Returns:
        The protobuf text.
    """
    dims = ", ".join(str(int(d)) for d in input_shape)
    return (
        f'name: "{name}"\n'
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {max_batch_size}\n"
        "input [\n"
        "  {\n"
        f'    name: "{INPUT_NAME}"\n'
        "    data_type: TYPE_FP32\n"
        "    format: FORMAT_NHWC\n"
        f"    dims: [ {dims} ]\n"
        "  }\n"
        "]\n"
        "output [\n"
        "  {\n"
        f'    name: "{OUTPUT_NAME}"\n'
        "    data_type: TYPE_FP32\n"
        f"    dims: [ {num_classes} ]\n"
        '    label_filename: "labels.txt"\n'
        "  }\n"
        "]\n"
        "dynamic_batching {\n"
        f"  preferred_batch_size: [ {max(1, max_batch_size // 2)}, {max_batch_size} ]\n"
        "  max_queue_delay_microseconds: 500\n"
        "}\n"
        "instance_group [\n"
        "  {\n"
        "    kind: KIND_CPU\n"
        "    count: 1\n"
        "  }\n"
        "]\n"
    )
