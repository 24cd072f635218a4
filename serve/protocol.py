"""Open Inference Protocol (KServe V2) infer requests and responses, JSON and binary; numpy only.

Pure functions of bytes and arrays, so every rule is unit-tested without a server. The binary
tensor extension is Triton's: the body is a JSON header of `Inference-Header-Content-Length`
bytes followed by the raw tensors; an input says `"parameters": {"binary_data_size": n}` instead
of `"data"`, and an output asks for `"binary_data": true` (or the whole request for
`"binary_data_output": true`). The classification extension turns an output into the top N
`"score:index:label"` strings (datatype BYTES).

Everything a client declares (depth, shape, sizes) is checked before anything is allocated.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_JSON_DEPTH = 16  # a nested (N, H, W, C) tensor needs 5 levels inside the request's 3
# curl -d and urllib label any POST body form-urlencoded unless told otherwise; Triton ignores the
# type, so that default is read like a missing one.
_JSON_TYPES = {"application/json", "application/octet-stream", "application/x-www-form-urlencoded"}


class ProtocolError(Exception):
    """A request that breaks the protocol; `status` is 400 (bad request) or 415 (media type)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output as the protocol describes it; -1 is the dynamic batch."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class OutputRequest:
    """One requested output: binary or JSON, and top-N classification (0 = raw tensor)."""

    name: str
    binary: bool = False
    classification: int = 0


@dataclass(frozen=True)
class InferRequest:
    """A parsed infer request: its id, the input batch and the outputs asked for."""

    id: str | None
    x: np.ndarray  # (N, H, W, C) float32
    outputs: tuple[OutputRequest, ...]


def check_media_type(content_type: str | None, content_encoding: str | None) -> None:
    """Refuse (415) bodies that are neither JSON nor Triton's binary format, or are compressed."""
    if content_encoding and content_encoding.strip().lower() not in ("", "identity"):
        raise ProtocolError(
            f"Content-Encoding {content_encoding[:40]!r} is not supported; send the body "
            "uncompressed",
            415,
        )
    if content_type is None:
        return  # tritonclient sends none
    media = content_type.split(";", 1)[0].strip().lower()
    if media and media not in _JSON_TYPES:
        raise ProtocolError(
            f"Content-Type {media[:60]!r} is not accepted; send application/json (or "
            "application/octet-stream with Inference-Header-Content-Length for binary tensors)",
            415,
        )


def parse_json(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON after checking its nesting depth; NaN and Infinity are refused.

    Args:
        raw: the JSON bytes (UTF-8).
        max_depth: the deepest allowed nesting of arrays and objects.

    Returns:
        The parsed value.
    """
    # Fewer brackets than the limit cannot nest past it: skip the scan (most headers).
    brackets = raw.count(b"[") + raw.count(b"{")
    depth = json_depth(raw) if brackets > max_depth else 0
    if depth > max_depth:
        raise ProtocolError(
            f"JSON nests {depth} levels deep; at most {max_depth} are allowed (a nested tensor "
            "needs one level per dimension)"
        )
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except ProtocolError:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ProtocolError(f"body is not valid JSON: {_short(exc)}") from None


def json_depth(raw: bytes) -> int:
    """The deepest nesting of `[`/`{` in JSON text, ignoring brackets inside strings.

    Linear and vectorised, so a hostile body cannot make it slow.
    """
    codes = np.frombuffer(raw, dtype=np.uint8)
    if codes.size == 0:
        return 0
    # A quote is real unless an odd run of backslashes precedes it.
    index = np.arange(codes.size, dtype=np.int64)
    last_plain = np.maximum.accumulate(np.where(codes != ord("\\"), index, -1))
    run_before = np.empty(codes.size, dtype=np.int64)
    run_before[0] = 0
    run_before[1:] = index[:-1] - last_plain[:-1]
    quotes = (codes == ord('"')) & (run_before % 2 == 0)
    outside = np.cumsum(quotes) % 2 == 0
    opens = (codes == ord("[")) | (codes == ord("{"))
    closes = (codes == ord("]")) | (codes == ord("}"))
    steps = (opens & outside).astype(np.int64) - (closes & outside)
    return max(0, int(np.cumsum(steps).max()))


def parse_infer_request(
    body: bytes,
    header_length: str | None,
    input_spec: TensorSpec,
    output_names: Sequence[str],
    max_batch_size: int,
) -> InferRequest:
    """Parse and check an infer request body against the model's input.

    Args:
        body: the whole HTTP body.
        header_length: the `Inference-Header-Content-Length` header, if any.
        input_spec: the model input (shape with -1 batch, datatype FP32).
        output_names: the model's output names.
        max_batch_size: the most images one request may carry.

    Returns:
        The parsed request.
    """
    if header_length is None:
        header, binary = body, memoryview(b"")
    else:
        if not header_length.strip().isdigit() or int(header_length) > len(body):
            raise ProtocolError(
                f"Inference-Header-Content-Length {header_length[:40]!r} must be an integer "
                f"between 0 and the body size {len(body)}"
            )
        split = int(header_length)
        header, binary = body[:split], memoryview(body)[split:]
    if not header.strip():
        raise ProtocolError('body is empty; send {"inputs": [...]} as JSON')
    request = parse_json(header)
    if not isinstance(request, dict):
        raise ProtocolError(f"request must be a JSON object, got {type(request).__name__}")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(f'"id" must be a string, got {type(request_id).__name__}')
    params = _dict(request.get("parameters"), '"parameters"')
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        got = f"{len(inputs)} inputs" if isinstance(inputs, list) else repr(inputs)[:40]
        raise ProtocolError(
            f'"inputs" must be a list with exactly one tensor ({input_spec.name!r}), got {got}'
        )
    x, used = _parse_input(inputs[0], binary, input_spec, max_batch_size)
    if used != len(binary):
        raise ProtocolError(
            f"body has {len(binary) - used} bytes after the header and binary inputs; "
            "Inference-Header-Content-Length or binary_data_size is wrong"
        )
    binary_all = _bool(params.get("binary_data_output", False), '"binary_data_output"')
    outputs = _parse_outputs(request.get("outputs"), output_names, binary_all)
    return InferRequest(id=request_id, x=x, outputs=outputs)


def _parse_input(
    tensor: Any, binary: memoryview, spec: TensorSpec, max_batch_size: int
) -> tuple[np.ndarray, int]:
    if not isinstance(tensor, dict):
        raise ProtocolError(f"an input must be a JSON object, got {type(tensor).__name__}")
    name = tensor.get("name")
    if name != spec.name:
        raise ProtocolError(
            f"input name {str(name)[:60]!r} is unknown; this model's input is {spec.name!r}"
        )
    datatype = tensor.get("datatype")
    if datatype != spec.datatype:
        raise ProtocolError(
            f"input {spec.name!r} has datatype {str(datatype)[:20]!r}; this model takes "
            f"{spec.datatype}"
        )
    shape = _shape(tensor.get("shape"), spec, max_batch_size)
    count = math.prod(shape)
    params = _dict(tensor.get("parameters"), f"input {spec.name!r} parameters")
    size = params.get("binary_data_size")
    if size is not None:
        if "data" in tensor:
            raise ProtocolError(
                f'input {spec.name!r} has both "data" and binary_data_size; send one'
            )
        if not _is_int(size) or size != count * 4:
            raise ProtocolError(
                f"input {spec.name!r} binary_data_size is {str(size)[:20]}; shape {list(shape)} "
                f"of FP32 needs {count * 4} bytes"
            )
        if size > len(binary):
            raise ProtocolError(
                f"input {spec.name!r} declares {size} binary bytes but the body has "
                f"{len(binary)} after the JSON header"
            )
        # A copy: the body's float32s start at any byte offset; onnxruntime wants aligned data.
        x = np.frombuffer(binary[:size], dtype="<f4").reshape(shape).copy()  # (N, H, W, C)
        used = size
    else:
        if "data" not in tensor:
            raise ProtocolError(f'input {spec.name!r} has neither "data" nor binary_data_size')
        x = _json_data(tensor["data"], shape, spec.name)
        used = 0
    if not np.isfinite(x).all():
        raise ProtocolError(f"input {spec.name!r} contains NaN or infinite values")
    return x, used


def _shape(value: Any, spec: TensorSpec, max_batch_size: int) -> tuple[int, ...]:
    want = "[N, " + ", ".join(str(d) for d in spec.shape[1:]) + "]"
    if not isinstance(value, list) or not all(_is_int(d) for d in value):
        raise ProtocolError(
            f"input {spec.name!r} shape must be a list of integers like {want}, got "
            f"{str(value)[:60]}"
        )
    if any(d < 0 for d in value):
        raise ProtocolError(f"input {spec.name!r} shape {value} has a negative dimension")
    if len(value) != len(spec.shape) or tuple(value[1:]) != spec.shape[1:]:
        raise ProtocolError(
            f"input {spec.name!r} has shape {str(value)[:60]}; this model takes {want} (NHWC)"
        )
    if not 1 <= value[0] <= max_batch_size:
        raise ProtocolError(
            f"input {spec.name!r} has a batch of {str(value[0])[:20]}; this server takes 1 to "
            f"{max_batch_size} images per request (--max-batch-size); split the request"
        )
    return tuple(int(d) for d in value)


def _json_data(data: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    count = math.prod(shape)
    if not isinstance(data, list):
        raise ProtocolError(f'input {name!r} "data" must be a list of numbers')
    if data and not isinstance(data[0], list) and len(data) != count:
        raise ProtocolError(
            f'input {name!r} "data" has {len(data)} values; shape {list(shape)} needs {count}'
        )
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError):  # ragged nesting
        raise ProtocolError(
            f'input {name!r} "data" is ragged; nest it as shape {list(shape)} or send it flat'
        ) from None
    if arr.dtype.kind not in "iuf":
        raise ProtocolError(f'input {name!r} "data" must hold only numbers (FP32)')
    if arr.size != count:
        raise ProtocolError(
            f'input {name!r} "data" has {arr.size} values; shape {list(shape)} needs {count}'
        )
    with np.errstate(over="ignore"):
        return arr.astype(np.float32).reshape(shape)  # (N, H, W, C); overflow caught as inf


def _parse_outputs(value: Any, names: Sequence[str], binary_all: bool) -> tuple[OutputRequest, ...]:
    if value is None:
        return tuple(OutputRequest(name, binary=binary_all) for name in names)
    if not isinstance(value, list) or not value:
        raise ProtocolError('"outputs" must be a non-empty list of {"name": ...} objects')
    result = []
    for item in value:
        if not isinstance(item, dict) or item.get("name") not in names:
            got = item.get("name") if isinstance(item, dict) else item
            raise ProtocolError(
                f"output {str(got)[:60]!r} is unknown; this model's outputs are {list(names)}"
            )
        params = _dict(item.get("parameters"), f"output {item['name']!r} parameters")
        binary = _bool(params.get("binary_data", binary_all), "binary_data")
        top = params.get("classification", 0)
        if not _is_int(top) or top < 0:
            raise ProtocolError(
                f"classification must be a non-negative integer (top N classes), got {str(top)[:20]}"
            )
        result.append(OutputRequest(item["name"], binary=binary, classification=int(top)))
    return tuple(result)


def classification_strings(probs: np.ndarray, labels: Sequence[str], top: int) -> list[str]:
    """Top-`top` classes of each row as `"score:index:label"`, best first, row-major.

    Args:
        probs: (N, num_classes) probabilities.
        labels: the class labels.
        top: how many per row (clamped to num_classes).

    Returns:
        N * min(top, num_classes) strings.
    """
    k = min(top, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]  # (N, k)
    return [f"{probs[r, i]:f}:{i}:{labels[i]}" for r in range(probs.shape[0]) for i in order[r]]


def encode_infer_response(
    model_name: str,
    model_version: str,
    request: InferRequest,
    outputs: dict[str, np.ndarray],
    labels: Sequence[str],
) -> tuple[bytes, dict[str, str]]:
    """The response body and headers for a finished request.

    Args:
        model_name: the served model's name.
        model_version: its version string.
        request: the parsed request (its id and requested outputs).
        outputs: output name -> (N, num_classes) float32 array.
        labels: class labels for the classification extension.

    Returns:
        (body, headers); binary outputs follow the JSON header, whose length is in
        `Inference-Header-Content-Length`.
    """
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for out in request.outputs:
        probs = outputs[out.name]
        if out.classification:
            strings = classification_strings(probs, labels, out.classification)
            shape = [probs.shape[0], min(out.classification, probs.shape[1])]
            tensor: dict[str, Any] = {"name": out.name, "datatype": "BYTES", "shape": shape}
            if out.binary:
                blob = b"".join(_bytes_element(s.encode()) for s in strings)
            else:
                tensor["data"] = strings
        else:
            tensor = {"name": out.name, "datatype": "FP32", "shape": list(probs.shape)}
            if out.binary:
                blob = np.ascontiguousarray(probs, dtype="<f4").tobytes()
            else:
                tensor["data"] = probs.ravel().tolist()
        if out.binary:
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        tensors.append(tensor)
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        response["id"] = request.id
    response["outputs"] = tensors
    header = json.dumps(response, separators=(",", ":"), allow_nan=False).encode()
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }


def _bytes_element(data: bytes) -> bytes:
    # Triton's BYTES wire format: a 4-byte little-endian length, then the bytes.
    return struct.pack("<I", len(data)) + data


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _dict(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError(f"{what} must be true or false, got {str(value)[:20]}")
    return value


def _refuse_constant(token: str) -> Any:
    raise ProtocolError(f"JSON contains {token}; NaN and Infinity are not valid numbers here")


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


__all__ = [
    "MAX_JSON_DEPTH",
    "InferRequest",
    "OutputRequest",
    "ProtocolError",
    "TensorSpec",
    "check_media_type",
    "classification_strings",
    "encode_infer_response",
    "json_depth",
    "parse_infer_request",
    "parse_json",
]
