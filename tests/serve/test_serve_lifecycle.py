"""Start-up failures, API keys, the int8 variant, overload (503) and SIGTERM draining."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from serve_helpers import start_server

pytestmark = pytest.mark.slow

KEY = "s3cret-key-for-tests"


def _binary_body(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(
        {
            "id": "b",
            "inputs": [
                {
                    "name": "input",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return head + x.astype("<f4").tobytes(), {"Inference-Header-Content-Length": str(len(head))}


def _probs(r: httpx.Response, n: int) -> np.ndarray:
    size = int(r.headers["inference-header-content-length"])
    return np.frombuffer(r.content[size:], dtype="<f4").reshape(n, -1)


def test_start_up_failures_exit_1_and_bad_flags_exit_2(
    exported_package: Path, tmp_path: Path
) -> None:
    broken = {}
    for case in ("hash", "missing", "shape"):
        pkg = tmp_path / case / "seed"
        shutil.copytree(exported_package, pkg)
        broken[case] = pkg
    with open(broken["hash"] / "model.onnx", "ab") as fh:
        fh.write(b"tampered")
    (broken["missing"] / "model.int8.onnx").unlink()
    meta = json.loads((broken["shape"] / "metadata.json").read_text())
    meta["input_shape"] = [20, 20, 1]
    (broken["shape"] / "metadata.json").write_text(json.dumps(meta))

    cli = [sys.executable, "-m", "cnnedge", "serve", "--port", "0"]
    procs = {
        "hash": subprocess.Popen([*cli, str(broken["hash"])], stderr=subprocess.PIPE, text=True),
        "missing": subprocess.Popen(
            [*cli, str(broken["missing"]), "--variant", "int8"], stderr=subprocess.PIPE, text=True
        ),
        "shape": subprocess.Popen([*cli, str(broken["shape"])], stderr=subprocess.PIPE, text=True),
        "nothing": subprocess.Popen(
            [*cli, str(tmp_path / "absent")], stderr=subprocess.PIPE, text=True
        ),
        "usage": subprocess.Popen(
            [*cli, str(exported_package), "--max-batch-size", "0"],
            stderr=subprocess.PIPE,
            text=True,
        ),
    }
    expected = {
        "hash": "model.onnx has sha256",
        "missing": "model.int8.onnx is missing (variant int8)",
        "shape": "metadata.json says (N, 20, 20, 1) float32",
        "nothing": "is not a model package: metadata.json is missing",
        "usage": "--max-batch-size 0 must be >= 1",
    }
    for case, proc in procs.items():
        _, err = proc.communicate(timeout=60)
        code = 2 if case == "usage" else 1
        assert proc.returncode == code, f"{case}: exit {proc.returncode}, stderr {err!r}"
        assert err.startswith("error: ") and expected[case] in err, f"{case}: {err!r}"
        assert "Traceback" not in err


@pytest.fixture(scope="module")
def keyed_int8(exported_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:  # type: ignore[type-arg]
    """An int8 server that requires an API key given through the environment."""
    srv = start_server(
        exported_package,
        tmp_path_factory.mktemp("keyed"),
        "--variant",
        "int8",
        "--threads",
        "1",
        env={"CNNEDGE_API_KEY": KEY},
    )
    yield srv
    srv.stop()


def test_api_key_guards_everything_but_health_and_page(keyed_int8) -> None:  # type: ignore[no-untyped-def]
    url = keyed_int8.url
    assert httpx.get(url + "/v2/health/live").status_code == 200
    assert httpx.get(url + "/v2/health/ready").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        r = httpx.get(url + "/v2/models/seed", headers=headers)
        assert r.status_code == 401, f"{headers}: {r.status_code}"
        assert r.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in r.json()["error"]
    assert httpx.get(url + "/metrics").status_code == 401
    # The page and its files hold no data; the page asks for the key when its calls get 401.
    assert httpx.get(url + "/").status_code == 200
    assert httpx.get(url + "/static/app.js").status_code == 200
    assert httpx.get(url + "/v1/models").status_code == 401
    ok = httpx.get(url + "/v2/models/seed", headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200 and ok.json()["name"] == "seed"


def test_int8_variant_is_served(keyed_int8, exported_package: Path, digits: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    from cnnedge.serve.runtime import load_model

    client = triton.InferenceServerClient(keyed_int8.hostport)
    auth = {"Authorization": f"Bearer {KEY}"}
    config = client.get_model_config("seed", headers=auth)
    assert config["parameters"]["variant"]["string_value"] == "int8"
    tensor = triton.InferInput("input", [4, 28, 28, 1], "FP32")
    tensor.set_data_from_numpy(digits[:4])
    got = client.infer("seed", [tensor], headers=auth).as_numpy("probabilities")
    want = load_model(exported_package, "int8", threads=1).run(digits[:4])
    diff = float(np.abs(got - want).max())
    assert diff < 1e-5, f"served int8 vs in-process int8 max diff {diff}"
    client.close()


def test_full_queue_answers_503_at_once(exported_package: Path, tmp_path: Path, digits) -> None:  # type: ignore[no-untyped-def]
    from cnnedge.serve.runtime import load_model

    srv = start_server(exported_package, tmp_path, "--max-queue", "1", "--threads", "1")
    try:
        x = np.ascontiguousarray(np.concatenate([digits[:32]]))
        want = load_model(exported_package, threads=1).run(x)
        body, headers = _binary_body(x)
        n = 12
        barrier = threading.Barrier(n)
        codes: list[int] = []
        worst: list[float] = []

        def one() -> None:
            with httpx.Client(timeout=30) as c:
                barrier.wait()
                r = c.post(srv.url + "/v2/models/seed/infer", content=body, headers=headers)
            codes.append(r.status_code)
            if r.status_code == 200:
                worst.append(float(np.abs(_probs(r, 32) - want).max()))
            else:
                assert r.json()["error"].startswith("model seed has 1 requests queued")
                assert r.headers["retry-after"] == "1"

        threads = [threading.Thread(target=one) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(codes) == n and set(codes) <= {200, 503}, codes
        assert codes.count(503) >= 1, f"12 concurrent batches of 32 with --max-queue 1: {codes}"
        assert codes.count(200) >= 1, codes
        assert max(worst) < 1e-5, f"a response differs from in-process by {max(worst)}"
        text = httpx.get(srv.url + "/metrics").text
        assert 'code="503"' in text
    finally:
        assert srv.stop() == 0


def test_sigterm_drains_in_flight_requests_and_exits_0(
    exported_package: Path, tmp_path: Path, reference, digits
) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(exported_package, tmp_path)
    x = digits[:3]
    body, headers = _binary_body(x)
    sent_first = threading.Event()
    release = threading.Event()
    result: dict[str, object] = {}

    def slow_upload() -> Iterator[bytes]:
        yield body[:100]
        sent_first.set()
        release.wait(10)  # SIGTERM arrives while the body is half sent
        yield body[100:]

    def client() -> None:
        with httpx.Client(timeout=30) as c:
            result["response"] = c.post(
                srv.url + "/v2/models/seed/infer", content=slow_upload(), headers=headers
            )

    t = threading.Thread(target=client)
    t.start()
    assert sent_first.wait(10)
    time.sleep(0.2)
    srv.proc.send_signal(15)
    # The listening socket closes: new connections are refused while the request is in flight.
    deadline = time.monotonic() + 10
    refused = False
    while time.monotonic() < deadline and not refused:
        try:
            httpx.get(srv.url + "/v2/health/live", timeout=1)
            time.sleep(0.05)
        except httpx.ConnectError:
            refused = True
    assert refused, "server still accepted new connections after SIGTERM"
    assert srv.proc.poll() is None, "server exited before its in-flight request finished"
    release.set()
    t.join(30)
    r = result["response"]
    assert isinstance(r, httpx.Response) and r.status_code == 200, r
    diff = float(np.abs(_probs(r, 3) - reference.run(x)).max())
    assert diff < 1e-5, f"drained response differs from in-process by {diff}"
    assert srv.proc.wait(15) == 0


def test_readiness_and_infer_are_503_while_shutting_down(reference, digits) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from cnnedge.serve.app import AppConfig, create_app

    app = create_app([reference], AppConfig(access_log=False))
    body, headers = _binary_body(digits[:1])

    async def scenario() -> None:
        async with app.router.lifespan_context(app):  # starts the batcher, as uvicorn does
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as c:
                assert (await c.get("/v2/health/ready")).status_code == 200
                r = await c.post("/v2/models/seed/infer", content=body, headers=headers)
                assert r.status_code == 200, r.text
                app.state.shutting_down = True  # what the SIGTERM handler sets
                ready = await c.get("/v2/health/ready")
                assert ready.status_code == 503 and "shutting down" in ready.json()["error"]
                r = await c.post("/v2/models/seed/infer", content=body, headers=headers)
                assert r.status_code == 503 and "not ready" in r.json()["error"]
                assert (await c.get("/v2/health/live")).status_code == 200

    asyncio.run(scenario())


def test_workers_share_one_port_and_exit_0(
    exported_package: Path, tmp_path: Path, reference, digits
) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as s:  # --workers needs a fixed port; take a free one
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = start_server(exported_package, tmp_path, "--workers", "2", "--port", str(port))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(srv.url + "/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        children = Path(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children").read_text().split()
        assert len(children) >= 2, f"expected 2 worker processes, found {children}"
        body, headers = _binary_body(digits[:2])
        for _ in range(6):  # new connections, spread over the workers by the kernel
            r = httpx.post(srv.url + "/v2/models/seed/infer", content=body, headers=headers)
            assert r.status_code == 200, r.text
            diff = float(np.abs(_probs(r, 2) - reference.run(digits[:2])).max())
            assert diff < 1e-5, f"worker response differs from in-process by {diff}"
        from cnnedge.serve.runtime import default_threads

        config = httpx.get(srv.url + "/v2/models/seed/config").json()
        threads = config["parameters"]["intra_op_thread_count"]["string_value"]
        assert threads == str(max(1, default_threads(reserve=1) // 2)), threads  # cores shared
    finally:
        assert srv.stop() == 0
