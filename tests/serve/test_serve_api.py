"""The running server through the real `tritonclient.http`: health, metadata, config, infer."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

TOL = 1e-5  # batched vs single-image onnxruntime kernels may round differently

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(server):  # type: ignore[no-untyped-def]
    c = triton.InferenceServerClient(server.hostport, concurrency=4)
    yield c
    c.close()


def _input(x: np.ndarray, binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    return tensor


def test_health_and_metadata(client, server) -> None:  # type: ignore[no-untyped-def]
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("seed") and client.is_model_ready("seed", "1")
    assert not client.is_model_ready("nope")
    meta = client.get_server_metadata()
    assert meta["name"] == "cnnedge"
    assert {"binary_tensor_data", "classification"} <= set(meta["extensions"])
    model = client.get_model_metadata("seed")
    assert model["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 28, 28, 1]}]
    assert model["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    assert client.get_model_metadata("seed", "1") == model
    config = client.get_model_config("seed")
    assert config["max_batch_size"] == 32
    assert config["input"][0]["dims"] == [28, 28, 1] and config["output"][0]["dims"] == [10]
    listing = httpx.get(server.url + "/v2/models").json()
    assert listing == {"models": ["seed"]}


def test_binary_in_binary_out_equals_in_process(client, reference, digits) -> None:  # type: ignore[no-untyped-def]
    x = digits[:5]
    result = client.infer("seed", [_input(x)], request_id="req-7")
    got = result.as_numpy("probabilities")
    want = reference.run(x)
    diff = float(np.abs(got - want).max())
    assert got.shape == (5, 10) and diff < TOL, f"served vs in-process max diff {diff}"
    assert result.get_response()["id"] == "req-7"


def test_json_in_json_out_equals_in_process(client, reference, digits) -> None:  # type: ignore[no-untyped-def]
    x = digits[5:8]
    out = triton.InferRequestedOutput("probabilities", binary_data=False)
    result = client.infer("seed", [_input(x, binary=False)], outputs=[out])
    response = result.get_response()
    assert "parameters" not in response["outputs"][0], "asked for JSON, got binary"
    got = result.as_numpy("probabilities")
    diff = float(np.abs(got - reference.run(x)).max())
    assert diff < TOL, f"served vs in-process max diff {diff}"


def test_nested_json_through_raw_http(server, reference, digits) -> None:  # type: ignore[no-untyped-def]
    x = digits[8:10]
    body = {
        "id": "nested",
        "inputs": [
            {"name": "input", "shape": [2, 28, 28, 1], "datatype": "FP32", "data": x.tolist()}
        ],
    }
    r = httpx.post(server.url + "/v2/models/seed/versions/1/infer", json=body)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["id"] == "nested" and doc["model_name"] == "seed"
    got = np.array(doc["outputs"][0]["data"], dtype=np.float32).reshape(2, 10)
    diff = float(np.abs(got - reference.run(x)).max())
    assert diff < TOL, f"served vs in-process max diff {diff}"


@pytest.mark.parametrize("binary", [True, False])
def test_classification_extension(client, reference, digits, binary: bool) -> None:  # type: ignore[no-untyped-def]
    x = digits[10:14]
    out = triton.InferRequestedOutput("probabilities", binary_data=binary, class_count=3)
    result = client.infer("seed", [_input(x)], outputs=[out])
    got = result.as_numpy("probabilities")
    assert got.shape == (4, 3)
    want = reference.run(x)
    for row, probs in zip(got, want, strict=True):
        entries = [(e.decode() if isinstance(e, bytes) else e).split(":") for e in row]
        indices = [int(i) for _, i, _ in entries]
        assert indices == list(np.argsort(-probs)[:3]), f"{entries} vs {probs}"
        for score, index, label in entries:
            assert label == reference.labels[int(index)]
            assert abs(float(score) - probs[int(index)]) < 1e-5, f"{score} vs {probs[int(index)]}"


def test_concurrent_requests_form_batches(server, reference, digits) -> None:  # type: ignore[no-untyped-def]
    def batches() -> dict[int, int]:
        stats = httpx.get(server.url + "/v2/models/seed/stats").json()["model_stats"][0]
        return {b["batch_size"]: b["compute_infer"]["count"] for b in stats["batch_stats"]}

    before = batches()
    n = 32
    barrier = threading.Barrier(n)
    results: dict[int, np.ndarray] = {}
    errors: list[str] = []

    def one(i: int) -> None:
        c = triton.InferenceServerClient(server.hostport)
        try:
            barrier.wait()
            x = digits[i : i + 1]
            results[i] = c.infer("seed", [_input(x)]).as_numpy("probabilities")
        except Exception as exc:  # collected and reported below
            errors.append(repr(exc))
        finally:
            c.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    want = reference.run(digits[:n])
    worst = max(float(np.abs(results[i][0] - want[i]).max()) for i in range(n))
    assert worst < TOL, f"a batched response differs from its own input's output by {worst}"
    after = batches()
    grown = {size: after.get(size, 0) - before.get(size, 0) for size in after}
    assert max(s for s, c in grown.items() if c > 0) > 1, f"no batch above 1 image: {grown}"
    metrics = httpx.get(server.url + "/metrics").text
    assert 'cnnedge_batch_size_bucket{model="seed",le="1"}' in metrics


def test_stats_and_metrics_count_requests(server, client, digits) -> None:  # type: ignore[no-untyped-def]
    client.infer("seed", [_input(digits[:1])])
    stats = client.get_inference_statistics("seed")["model_stats"][0]
    assert stats["inference_count"] >= 1 and stats["execution_count"] >= 1
    assert stats["inference_stats"]["success"]["count"] >= 1
    every = httpx.get(server.url + "/v2/models/stats").json()["model_stats"]
    assert [m["name"] for m in every] == ["seed"]
    text = httpx.get(server.url + "/metrics").text
    for name in (
        "cnnedge_requests_total",
        "cnnedge_request_duration_seconds_bucket",
        "cnnedge_queue_duration_seconds_bucket",
        "cnnedge_batch_size_bucket",
        "cnnedge_requests_inflight",
    ):
        assert f"# TYPE {name.removesuffix('_bucket')}" in text, f"{name} missing"
    assert 'route="/v2/models/{model}/infer"' in text


def test_openapi_describes_the_infer_body(server) -> None:  # type: ignore[no-untyped-def]
    doc = httpx.get(server.url + "/openapi.json").json()
    infer = doc["paths"]["/v2/models/{model}/infer"]["post"]
    schema = infer["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/InferRequest"}
    assert "inputs" in doc["components"]["schemas"]["InferRequest"]["properties"]


def test_access_log_is_one_json_line_per_request(server) -> None:  # type: ignore[no-untyped-def]
    import json
    import time

    httpx.get(server.url + "/v2/health/live?probe=log")
    deadline = time.monotonic() + 3  # lines are written in batches, every 0.1 s
    lines: list[dict] = []
    while time.monotonic() < deadline:
        lines = [json.loads(x) for x in server.log().splitlines() if x.startswith("{")]
        if any(rec["path"] == "/v2/health/live" and rec["status"] == 200 for rec in lines):
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"no access line for /v2/health/live in {lines[-3:]}")
    assert {"ts", "client", "method", "path", "status", "bytes", "ms"} <= set(lines[-1])


def test_no_tensorflow_or_onnx_in_the_server_process(server) -> None:  # type: ignore[no-untyped-def]
    modules = set(Path(server.modules_file).read_text().split())
    assert "onnxruntime" in modules and "starlette" in modules and "uvicorn" in modules
    banned = sorted(
        m
        for m in modules
        if m.split(".")[0] in {"tensorflow", "keras", "tf2onnx", "onnx", "tf_keras"}
    )
    assert not banned, f"server imported {banned[:10]}"
    maps = Path(f"/proc/{server.proc.pid}/maps").read_text()
    assert "tensorflow" not in maps, "a TensorFlow library is mapped into the server"
