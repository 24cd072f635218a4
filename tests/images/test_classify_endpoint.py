"""`POST /v1/models/{m}:classify` and the page files, against a real `cnnedge serve` process."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from cnnedge.preprocess import PreprocessConfig, preprocess_image

pytestmark = pytest.mark.slow

BATCH_FILES = 40  # PNG files per multipart request in the round trip


def _url(server: Any, model: str = "seed") -> str:
    return f"{server.url}/v1/models/{model}:classify"


def _encode(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def test_round_trip_accuracy_through_the_endpoint(server: Any, digits: Any) -> None:
    with httpx.Client(timeout=60) as client:
        for size, folder in digits.folders.items():
            paths = sorted(folder.iterdir())
            labels: list[int] = []
            for start in range(0, len(paths), BATCH_FILES):
                chunk = paths[start : start + BATCH_FILES]
                files = [("file", (p.name, p.read_bytes(), "image/png")) for p in chunk]
                response = client.post(_url(server), files=files)
                assert response.status_code == 200, response.text
                predictions = response.json()["predictions"]
                assert len(predictions) == len(chunk)
                labels.extend(int(p["label"]) for p in predictions)
            accuracy = float(np.mean(np.array(labels) == digits.y))
            loss = digits.direct_accuracy - accuracy
            print(f"{size}: server {accuracy:.3f}, direct {digits.direct_accuracy:.3f}")
            assert loss <= 0.02, (
                f"{size[0]}x{size[1]} PNGs through the endpoint: accuracy {accuracy:.3f}, direct "
                f"{digits.direct_accuracy:.3f}: lost {100 * loss:.1f} points (limit 2)"
            )


def test_raw_body_matches_the_model_in_process(
    server: Any, digits: Any, exported_package: Path
) -> None:
    from cnnedge.serve.runtime import load_model

    model = load_model(exported_package)
    png = (digits.folders[(300, 200)] / "00002.png").read_bytes()
    x = preprocess_image(png, PreprocessConfig.from_metadata(model.metadata))
    expected = model.run(x[None])[0]  # (10,)
    response = httpx.post(
        _url(server) + "?debug=1&top_k=10", content=png, headers={"content-type": "image/png"}
    )
    assert response.status_code == 200, response.text
    (pred,) = response.json()["predictions"]
    probs = np.array(pred["probabilities"])
    diff = float(np.abs(probs - expected).max())
    assert diff < 1e-5, f"server probabilities differ from in-process ones by {diff:.2e}"
    assert pred["label"] == str(int(expected.argmax()))
    assert [t["label"] for t in pred["top_k"]] == [str(i) for i in np.argsort(-expected)]
    # The debug image is what the model saw, as an 8-bit PNG.
    prefix = "data:image/png;base64,"
    assert pred["input_image"].startswith(prefix)
    seen = Image.open(io.BytesIO(base64.b64decode(pred["input_image"][len(prefix) :])))
    seen_arr = np.asarray(seen, dtype=np.float32) / 255.0
    assert seen_arr.shape == (28, 28)
    err = float(np.abs(seen_arr - x[..., 0]).max())
    assert err <= 0.5 / 255 + 1e-6, f"debug image differs from the model input by {err:.4f}"


def test_mislabelled_content_type_is_decided_by_magic_bytes(server: Any, digits: Any) -> None:
    png = (digits.folders[(56, 56)] / "00003.png").read_bytes()
    response = httpx.post(_url(server), content=png)  # httpx sends no image content type
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] == str(digits.direct[3])


def _bomb() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("gif", 415, "GIF is not accepted"),
        ("tiff", 415, "TIFF is not accepted"),
        ("garbage", 400, "not an image"),
        ("truncated", 400, "truncated or corrupt"),
        ("empty", 400, "empty"),
        ("blank", 400, "blank"),
        ("bomb", 413, "100000x100000"),
        ("too big", 413, "exceeds the limit"),
    ],
)
def test_errors_have_the_v2_shape(
    server: Any, digits: Any, case: str, status: int, message: str
) -> None:
    png = (digits.folders[(280, 280)] / "00000.png").read_bytes()
    digit = Image.open(io.BytesIO(png))
    bodies = {
        "gif": _encode(digit, "GIF"),
        "tiff": _encode(digit, "TIFF"),
        "garbage": b"GARBAGE" * 10,
        "truncated": png[: len(png) // 2],
        "empty": b"",
        "blank": _encode(Image.new("L", (64, 64), 255), "PNG"),
        "bomb": _bomb(),
        "too big": b"\x89PNG\r\n\x1a\n" + bytes(server.max_body_bytes),
    }
    response = httpx.post(_url(server), content=bodies[case], headers={"content-type": "image/png"})
    assert response.status_code == status, f"{case}: {response.status_code} {response.text}"
    body = response.json()
    assert set(body) == {"error"} and message in body["error"], body


def test_multipart_errors_name_the_file(server: Any, digits: Any) -> None:
    good = (digits.folders[(56, 56)] / "00000.png").read_bytes()
    gif = _encode(Image.open(io.BytesIO(good)), "GIF")
    files = [("file", ("a.png", good, "image/png")), ("file", ("b.gif", gif, "image/gif"))]
    response = httpx.post(_url(server), files=files)
    assert response.status_code == 415
    assert response.json()["error"].startswith("b.gif: "), response.text
    response = httpx.post(_url(server), files=[("note", (None, b"a field, not a file"))])
    assert response.status_code == 400 and "no file parts" in response.json()["error"]


def test_request_parameters_are_checked(server: Any, digits: Any) -> None:
    png = (digits.folders[(56, 56)] / "00000.png").read_bytes()
    assert httpx.post(_url(server, "nope"), content=png).status_code == 404
    assert httpx.post(_url(server) + "?top_k=0", content=png).status_code == 400
    assert httpx.post(_url(server) + "?invert=maybe", content=png).status_code == 400
    # Forcing no inversion on black-on-white paper leaves nothing to classify.
    response = httpx.post(_url(server) + "?invert=never", content=png)
    assert response.status_code == 400 and "blank" in response.json()["error"]
    response = httpx.post(_url(server), content=png, headers={"content-encoding": "gzip"})
    assert response.status_code == 415


def test_many_files_are_split_across_batches(server: Any, digits: Any) -> None:
    # More files than --max-batch-size (32 by default): the endpoint slices them for the batcher.
    paths = sorted(digits.folders[(56, 56)].iterdir())[:70]
    files = [("file", (p.name, p.read_bytes(), "image/png")) for p in paths]
    response = httpx.post(_url(server), files=files, timeout=60)
    assert response.status_code == 200, response.text
    labels = [int(p["label"]) for p in response.json()["predictions"]]
    agree = float(np.mean(np.array(labels) == digits.direct[:70]))
    assert agree >= 0.95, f"only {agree:.2f} of 70 answers agree with the direct predictions"


def test_page_and_static_files(server: Any) -> None:
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<meta name="viewport"' in page.text and '<canvas id="pad"' in page.text
    assert "'self'" in page.headers["content-security-policy"]
    for name, kind in [("app.js", "text/javascript"), ("app.css", "text/css")]:
        response = httpx.get(f"{server.url}/static/{name}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
        # Nothing is fetched from the internet: no absolute URLs in the page's files.
        assert not re.search(r"https?://", response.text), f"{name} refers to another site"
    assert not re.search(r"(src|href)=\"https?://", page.text)
    assert httpx.get(server.url + "/static/__init__.py").status_code == 404
    assert httpx.get(server.url + "/static/missing.js").status_code == 404
    models = httpx.get(server.url + "/v1/models").json()["models"]
    assert models == [
        {"name": "seed", "labels": [str(i) for i in range(10)], "input_shape": [28, 28, 1]}
    ]
