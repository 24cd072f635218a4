"""Run an exported artifact (or the Keras model) on NHWC float32 images and return probabilities.

One interface for verification and benchmarking: `runner.predict(x, batch_size)` takes images in
[0, 1] (N, H, W, C) and returns (N, classes) float32 probabilities, whatever the runtime's own
input type (the int8 TFLite model quantises its input and dequantises its output here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cnnedge.export.onnx_export import INPUT_NAME, serving_function


class Runner(Protocol):
    """Something that turns images into class probabilities."""

    def predict(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray: ...


class KerasRunner:
    """The reference: the Keras model in inference mode through its traced serving function."""

    def __init__(self, model: Any, input_shape: tuple[int, int, int]) -> None:
        self._fn = serving_function(model, input_shape)

    def predict(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        out = [
            self._fn(np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32))
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate([o["probabilities"].numpy() for o in out])  # (N, K)


class OnnxRunner:
    """An onnxruntime CPU session on an ONNX file."""

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's default (all cores)
        self._session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def predict(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        out = [
            self._session.run(None, {INPUT_NAME: np.ascontiguousarray(x[i : i + batch_size])})[0]
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(out).astype(np.float32)  # (N, K)


class TFLiteRunner:
    """The LiteRT interpreter (ai-edge-litert) on a .tflite file, resized to each batch size."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # pragma: no cover - depends on the install
            from cnnedge.errors import CnnedgeError

            raise CnnedgeError(
                "running .tflite files needs ai-edge-litert; install it with "
                "`pip install 'cnnedge[tflite]'`"
            ) from None
        self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._batch = -1

    @property
    def input_dtype(self) -> Any:
        return self._input["dtype"]

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            shape = [batch, *self._input["shape_signature"][1:]]
            self._interpreter.resize_tensor_input(self._input["index"], shape, strict=False)
            self._interpreter.allocate_tensors()
            self._batch = batch

    def predict(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        in_scale, in_zero = self._input["quantization"]
        out_scale, out_zero = self._output["quantization"]
        in_dtype, outs = self._input["dtype"], []
        for i in range(0, len(x), batch_size):
            batch = np.asarray(x[i : i + batch_size], dtype=np.float32)
            if np.issubdtype(in_dtype, np.integer):
                info = np.iinfo(in_dtype)
                batch = np.clip(np.round(batch / in_scale + in_zero), info.min, info.max)
            self._resize(len(batch))
            self._interpreter.set_tensor(self._input["index"], batch.astype(in_dtype))
            self._interpreter.invoke()
            y = self._interpreter.get_tensor(self._output["index"])
            if np.issubdtype(y.dtype, np.integer):
                y = (y.astype(np.float32) - out_zero) * out_scale
            outs.append(y.astype(np.float32))
        return np.concatenate(outs)  # (N, K)

    def quantization(self) -> dict[str, Any]:
        """The input and output dtypes and (scale, zero point), for consumers of the file."""
        return {
            name: {
                "dtype": np.dtype(d["dtype"]).name,
                "scale": float(d["quantization"][0]),
                "zero_point": int(d["quantization"][1]),
            }
            for name, d in (("input", self._input), ("output", self._output))
        }


def open_runner(runtime: str, path: str | Path) -> Runner:
    """A runner for a file, by runtime name ("onnxruntime" or "litert")."""
    if runtime == "onnxruntime":
        return OnnxRunner(path)
    if runtime == "litert":
        return TFLiteRunner(path)
    raise ValueError(f"unknown runtime {runtime!r}")
