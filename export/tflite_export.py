"""Keras to TFLite: float32, float16 weights, and full-integer int8 with builtin ops only."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

MODES = ("float32", "float16", "int8")


def keras_to_tflite(
    model: Any,
    mode: str = "float32",
    representative: np.ndarray | None = None,
) -> bytes:
    """Convert a Keras model to a TFLite flatbuffer.

    Args:
        model: the Keras model; its input shape is kept, with a dynamic batch axis.
        mode: "float32", "float16" (weights stored as fp16) or "int8" (full-integer: int8 input and
            output, TFLITE_BUILTINS_INT8 only, so no Flex delegate is needed).
        representative: calibration images (N, H, W, C) float32; required for "int8".

    Returns:
        The .tflite bytes.
    """
    import tensorflow as tf

    if mode not in MODES:
        raise ValueError(f"mode {mode!r}; expected one of {MODES}")
    # from_concrete_functions keeps resource variables (READ_VARIABLE fails in LiteRT, outputs are
    # NaN); from_keras_model freezes the weights and keeps the batch axis dynamic.
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        if representative is None or len(representative) == 0:
            raise ValueError("int8 conversion needs representative images")
        images = np.asarray(representative, dtype=np.float32)

        def dataset() -> Iterator[list[np.ndarray]]:
            for i in range(len(images)):
                yield [images[i : i + 1]]  # (1, H, W, C)

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    # The converter prints a SavedModel summary and warns about input statistics; keep the CLI quiet.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return bytes(converter.convert())
