"""The V2 request parser and response encoder, driven directly (pure functions, no server)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from cnnedge.serve.metrics import ServerMetrics
from cnnedge.serve.protocol import (
    OutputRequest,
    ProtocolError,
    TensorSpec,
    check_media_type,
    classification_strings,
    encode_infer_response,
    json_depth,
    parse_infer_request,
)

SPEC = TensorSpec("input", "FP32", (-1, 4, 4, 1))
OUT = ["probabilities"]


def _json(obj: object) -> bytes:
    return json.dumps(obj).encode()


def _request(data: object = None, shape: object = (1, 4, 4, 1), **extra: object) -> dict:
    tensor = {"name": "input", "shape": list(shape), "datatype": "FP32"}  # type: ignore[call-overload]
    tensor["data"] = list(range(16)) if data is None else data
    return {"inputs": [tensor], **extra}


def _parse(body: bytes, header: str | None = None, max_batch: int = 8):  # type: ignore[no-untyped-def]
    return parse_infer_request(body, header, SPEC, OUT, max_batch)


def test_flat_and_nested_json_give_the_same_tensor() -> None:
    flat = _parse(_json(_request(id="r1")))
    nested = _parse(_json(_request(data=np.arange(16).reshape(1, 4, 4, 1).tolist())))
    assert flat.id == "r1"
    assert flat.x.dtype == np.float32 and flat.x.shape == (1, 4, 4, 1)
    diff = float(np.abs(flat.x - nested.x).max())
    assert diff == 0.0, f"flat and nested data differ by {diff}"
    assert flat.outputs == (OutputRequest("probabilities", binary=False, classification=0),)


def test_binary_input_is_read_after_the_header() -> None:
    x = np.random.default_rng(0).random((2, 4, 4, 1), dtype=np.float32)
    header = {
        "inputs": [
            {
                "name": "input",
                "shape": [2, 4, 4, 1],
                "datatype": "FP32",
                "parameters": {"binary_data_size": x.nbytes},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    head = _json(header)
    parsed = _parse(head + x.tobytes(), str(len(head)))
    assert np.array_equal(parsed.x, x), f"max diff {np.abs(parsed.x - x).max()}"
    assert parsed.outputs[0].binary is True


@pytest.mark.parametrize(
    ("body", "header", "needle"),
    [
        (b"{", None, "not valid JSON"),
        (b"", None, "empty"),
        (b"[1, 2]", None, "JSON object"),
        (b'{"inputs": [{"name": "input", "data": [NaN]}]}', None, "NaN"),
        (b'{"inputs": [{"name": "input", "data": [Infinity]}]}', None, "Infinity"),
        (b"[" * 40 + b"]" * 40, None, "nests 40 levels"),
        (_json({"inputs": []}), None, "exactly one tensor"),
        (_json({"inputs": [{}, {}]}), None, "exactly one tensor"),
        (_json(_request(id=5)), None, '"id" must be a string'),
        (_json({"inputs": [{**_request()["inputs"][0], "name": "x"}]}), None, "unknown"),
        (_json({"inputs": [{**_request()["inputs"][0], "datatype": "FP64"}]}), None, "FP64"),
        (_json(_request(shape=[1, 4, 4])), None, "this model takes [N, 4, 4, 1]"),
        (_json(_request(shape=[1, 4, -4, 1])), None, "negative"),
        (_json(_request(shape=[10**15, 4, 4, 1])), None, "batch of 1000000000000000"),
        (_json(_request(shape=[9, 4, 4, 1])), None, "1 to 8 images"),
        (_json(_request(shape=[0, 4, 4, 1])), None, "batch of 0"),
        (_json(_request(shape=[1.0, 4, 4, 1])), None, "list of integers"),
        (_json(_request(shape=[True, 4, 4, 1])), None, "list of integers"),
        (_json(_request(data=list(range(15)))), None, "has 15 values"),
        (_json(_request(data=[[1, 2], [3]])), None, "ragged"),
        (_json(_request(data=["a"] * 16)), None, "only numbers"),
        (_json(_request(data=[True] * 16)), None, "only numbers"),
        (_json(_request(data=[1e39] * 16)), None, "NaN or infinite"),
        (_json(_request(data="abc")), None, "list of numbers"),
        (_json(_request(outputs=[{"name": "logits"}])), None, "output 'logits' is unknown"),
        (
            _json(
                _request(outputs=[{"name": "probabilities", "parameters": {"classification": -1}}])
            ),
            None,
            "non-negative integer",
        ),
        (_json(_request(parameters={"binary_data_output": "yes"})), None, "true or false"),
        (_json(_request()), "99999", "Inference-Header-Content-Length"),
        (_json(_request()), "-1", "Inference-Header-Content-Length"),
        (_json(_request()) + b"junk", str(len(_json(_request()))), "4 bytes after the header"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(
    body: bytes, header: str | None, needle: str
) -> None:
    with pytest.raises(ProtocolError) as info:
        _parse(body, header)
    assert info.value.status == 400
    assert needle in info.value.message, info.value.message


def test_binary_size_must_match_the_shape_and_the_body() -> None:
    tensor = {"name": "input", "shape": [1, 4, 4, 1], "datatype": "FP32"}
    for size, blob, needle in [(60, b"\0" * 60, "needs 64 bytes"), (64, b"\0" * 10, "body has 10")]:
        head = _json({"inputs": [{**tensor, "parameters": {"binary_data_size": size}}]})
        with pytest.raises(ProtocolError) as info:
            _parse(head + blob, str(len(head)))
        assert needle in info.value.message, info.value.message


def test_json_depth_ignores_brackets_in_strings() -> None:
    assert json_depth(b'{"id": "[[[[[[[[", "a": [[1]]}') == 3
    assert json_depth(b'{"id": "\\"[[[", "a": []}') == 2
    assert json_depth(b'{"id": "\\\\", "a": [[[]]]}') == 4


def test_media_types() -> None:
    for ok in (
        None,
        "application/json",
        "application/json; charset=utf-8",
        "application/octet-stream",
    ):
        check_media_type(ok, None)
    for bad, enc in (
        ("text/plain", None),
        ("multipart/form-data; boundary=x", None),
        (None, "gzip"),
    ):
        with pytest.raises(ProtocolError) as info:
            check_media_type(bad, enc)
        assert info.value.status == 415


def test_response_json_binary_and_classification() -> None:
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], dtype=np.float32)
    labels = ["a", "b", "c"]
    parsed = _parse(_json(_request(id="x")))
    plain = parsed.__class__(parsed.id, parsed.x, (OutputRequest("probabilities"),))
    body, headers = encode_infer_response("m", "1", plain, {"probabilities": probs}, labels)
    doc = json.loads(body)
    assert headers["content-type"] == "application/json"
    assert doc["id"] == "x" and doc["outputs"][0]["shape"] == [2, 3]
    diff = float(np.abs(np.array(doc["outputs"][0]["data"]) - probs.ravel()).max())
    assert diff < 1e-7, f"JSON round trip differs by {diff}"

    both = parsed.__class__(
        None,
        parsed.x,
        (OutputRequest("probabilities", binary=True), OutputRequest("probabilities", True, 2)),
    )
    body, headers = encode_infer_response("m", "1", both, {"probabilities": probs}, labels)
    size = int(headers["inference-header-content-length"])
    doc = json.loads(body[:size])
    assert "id" not in doc
    n = doc["outputs"][0]["parameters"]["binary_data_size"]
    got = np.frombuffer(body[size : size + n], dtype="<f4").reshape(2, 3)
    assert np.array_equal(got, probs), f"binary output differs by {np.abs(got - probs).max()}"
    rest = body[size + n :]
    strings = []
    while rest:
        (length,) = struct.unpack_from("<I", rest)
        strings.append(rest[4 : 4 + length].decode())
        rest = rest[4 + length :]
    assert strings == ["0.700000:1:b", "0.200000:2:c", "0.500000:0:a", "0.300000:2:c"]
    assert doc["outputs"][1]["shape"] == [2, 2] and doc["outputs"][1]["datatype"] == "BYTES"


def test_classification_is_clamped_to_the_class_count() -> None:
    probs = np.array([[0.2, 0.8]], dtype=np.float32)
    assert classification_strings(probs, ["x", "y"], 5) == ["0.800000:1:y", "0.200000:0:x"]


def test_metrics_exposition() -> None:
    m = ServerMetrics()
    m.requests.inc(route="/v2", method="GET", code="200")
    m.batch_size.observe(3, model="seed")
    m.batch_size.observe(40, model="seed")
    text = m.render()
    assert 'cnnedge_requests_total{code="200",method="GET",route="/v2"} 1' in text
    assert 'cnnedge_batch_size_bucket{model="seed",le="2"} 0' in text
    assert 'cnnedge_batch_size_bucket{model="seed",le="4"} 1' in text
    assert 'cnnedge_batch_size_bucket{model="seed",le="+Inf"} 2' in text
    assert 'cnnedge_batch_size_sum{model="seed"} 43' in text
    assert "# TYPE cnnedge_batch_size histogram" in text
