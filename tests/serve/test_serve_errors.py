"""Every error case over raw HTTP: the status code and a `{"error": ...}` body, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.slow

INFER = "/v2/models/seed/infer"


def _tensor(shape: list[int], **extra: object) -> dict[str, object]:
    n = int(np.prod(shape)) if shape and all(d >= 0 for d in shape) else 0
    return {
        "name": "input",
        "shape": shape,
        "datatype": "FP32",
        "data": [0.5] * min(n, 10**5),
        **extra,
    }


def _check(r: httpx.Response, status: int, needle: str) -> None:
    assert r.status_code == status, f"{r.status_code} {r.text[:300]}"
    doc = r.json()
    assert set(doc) == {"error"}, doc
    assert needle in doc["error"], doc["error"]
    assert "Traceback" not in r.text


@pytest.fixture(scope="module")
def http(server) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


@pytest.mark.parametrize(
    ("method", "path", "status", "needle"),
    [
        ("GET", "/v2/models/nope", 404, "'nope' is not served here"),
        ("POST", "/v2/models/nope/infer", 404, "'nope' is not served here"),
        ("GET", "/v2/models/seed/versions/2", 404, "no version '2'"),
        ("GET", "/v2/models/seed/ready/x", 404, "no route"),
        ("GET", "/nothing/here", 404, "no route"),
        ("GET", INFER, 405, "method GET is not allowed"),
        ("DELETE", "/v2/models/seed", 405, "not allowed"),
    ],
)
def test_routing_errors(
    http: httpx.Client, method: str, path: str, status: int, needle: str
) -> None:
    _check(http.request(method, path), status, needle)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"not json", "not valid JSON"),
        (b'{"inputs": [{"name": "input", "data": [NaN]}]}', "NaN"),
        (b'{"inputs": [{"name": "input", "data": [-Infinity]}]}', "-Infinity"),
        (b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nests 5001 levels"),
        (json.dumps({"inputs": [_tensor([1, 28, 28, 1], datatype="INT8")]}).encode(), "'INT8'"),
        (
            json.dumps({"inputs": [_tensor([1, 28, 28])]}).encode(),
            "this model takes [N, 28, 28, 1]",
        ),
        (json.dumps({"inputs": [_tensor([1, -28, 28, 1])]}).encode(), "negative"),
        (json.dumps({"inputs": [_tensor([2**62, 28, 28, 1])]}).encode(), f"batch of {2**62}"),
        (json.dumps({"inputs": [_tensor([33, 28, 28, 1])]}).encode(), "1 to 32 images"),
        (
            json.dumps({"inputs": [{**_tensor([1, 28, 28, 1]), "data": [0.5] * 700}]}).encode(),
            "has 700 values",
        ),
        (
            json.dumps({"inputs": [_tensor([1, 28, 28, 1])], "outputs": [{"name": "x"}]}).encode(),
            "output 'x' is unknown",
        ),
    ],
)
def test_bad_bodies_are_400(http: httpx.Client, body: bytes, needle: str) -> None:
    _check(http.post(INFER, content=body), 400, needle)


def test_binary_sizes_are_checked(http: httpx.Client) -> None:
    head = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 28, 28, 1], "datatype": "FP32",
                     "parameters": {"binary_data_size": 3136}}]}
    ).encode()  # fmt: skip
    short = http.post(
        INFER,
        content=head + b"\0" * 100,
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    _check(short, 400, "declares 3136 binary bytes but the body has 100")
    wrong = http.post(
        INFER,
        content=head + b"\0" * 100,
        headers={"Inference-Header-Content-Length": str(len(head) + 500)},
    )
    _check(wrong, 400, "Inference-Header-Content-Length")


def test_unsupported_media_types_are_415(http: httpx.Client) -> None:
    body = json.dumps({"inputs": [_tensor([1, 28, 28, 1])]}).encode()
    _check(
        http.post(INFER, content=body, headers={"Content-Type": "text/plain"}), 415, "text/plain"
    )
    _check(http.post(INFER, content=body, headers={"Content-Encoding": "gzip"}), 415, "gzip")


def test_body_over_the_limit_is_413_by_length_and_by_stream(http: httpx.Client) -> None:
    big = b" " * (4 * 1024 * 1024 + 1)
    _check(http.post(INFER, content=big), 413, "exceeds the limit of 4194304 bytes")

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for _ in range(80):
            yield b" " * 65536

    _check(http.post(INFER, content=chunks()), 413, "exceeds the limit of 4194304 bytes")


def test_server_survives_the_errors(http: httpx.Client) -> None:
    body = json.dumps({"inputs": [_tensor([1, 28, 28, 1])]}).encode()
    r = http.post(INFER, content=body)
    assert r.status_code == 200, r.text
    assert http.get("/v2/health/ready").status_code == 200
    text = http.get("/metrics").text
    assert 'code="500"' not in text, "some request ended in a 500"


def test_random_mutations_never_cause_a_500(http: httpx.Client) -> None:
    """A seeded fuzz: valid requests with one field replaced, truncated or corrupted."""
    rng = np.random.default_rng(1234)
    junk: list[object] = [
        None,
        -1,
        0,
        2**64,
        1.5,
        True,
        "x",
        "",
        [],
        {},
        [[[]]],
        {"a": [1]},
        [-1] * 4,
    ]
    base = {
        "id": "fuzz",
        "inputs": [
            {"name": "input", "shape": [1, 28, 28, 1], "datatype": "FP32", "data": [0.1] * 784}
        ],
        "outputs": [{"name": "probabilities", "parameters": {"classification": 2}}],
        "parameters": {"binary_data_output": False},
    }
    paths = [("id",), ("inputs",), ("inputs", 0), ("inputs", 0, "name"), ("inputs", 0, "shape"),
             ("inputs", 0, "shape", 0), ("inputs", 0, "shape", 3), ("inputs", 0, "datatype"),
             ("inputs", 0, "data"), ("inputs", 0, "data", 5), ("inputs", 0, "parameters"),
             ("outputs",), ("outputs", 0, "name"), ("outputs", 0, "parameters", "classification"),
             ("parameters",), ("parameters", "binary_data_output")]  # fmt: skip
    seen: dict[int, int] = {}
    for i in range(150):
        doc = json.loads(json.dumps(base))
        kind = i % 3
        if kind == 0:  # replace one field with junk
            path = paths[int(rng.integers(len(paths)))]
            target = doc
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = junk[int(rng.integers(len(junk)))]
            body = json.dumps(doc).encode()
        else:
            body = bytearray(json.dumps(doc).encode())
            if kind == 1:  # truncate
                body = body[: int(rng.integers(len(body)))]
            else:  # corrupt a few bytes
                for pos in rng.integers(len(body), size=3):
                    body[int(pos)] = int(rng.integers(256))
            body = bytes(body)
        headers = {}
        if rng.random() < 0.2:
            headers["Inference-Header-Content-Length"] = str(int(rng.integers(-5, len(body) + 5)))
        r = http.post(INFER, content=body, headers=headers)
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        assert r.status_code in (200, 400, 415), (
            f"{r.status_code} for {body[:200]!r}: {r.text[:200]}"
        )
        if r.status_code != 200:
            assert set(r.json()) == {"error"}, r.text[:200]
    assert seen.get(400, 0) > 50, seen
