"""Fixtures for the image tests: real digits rendered as files, and a real `cnnedge serve` process."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

# Body limit of the test server: small enough to test 413 cheaply, big enough for a batch of PNGs.
MAX_BODY_BYTES = 1024 * 1024
API_KEY = "page-test-key"
# Sizes (width, height) the round trip renders the test digits at.
SIZES = ((56, 56), (280, 280), (300, 200))
# The first 500 of the 1,000 test digits (the split is shuffled, so every class is there):
# 2 points of accuracy is 10 digits, and the files cost a second per size to classify.
ROUND_TRIP_DIGITS = 500
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def render_black_on_white(digit: np.ndarray, size: tuple[int, int]) -> bytes:
    """A (28, 28, 1) MNIST digit in [0, 1] as a black-on-white PNG of `size` (width, height).

    Square sizes scale the whole 28x28 frame; other sizes scale it to the height and paste it
    off-centre on white paper, so cropping and centring have work to do. Pixels are replicated
    (nearest neighbour): the file shows the same digit, not a blurred one.
    """
    from PIL import Image

    gray = Image.fromarray(np.round((1.0 - digit[..., 0]) * 255).astype(np.uint8))
    width, height = size
    if width == height:
        image = gray.resize(size, Image.Resampling.NEAREST)
    else:
        side = min(width, height)
        image = Image.new("L", size, 255)
        image.paste(gray.resize((side, side), Image.Resampling.NEAREST), ((width - side) // 5, 0))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class Digits:
    """The default data's test digits, their labels, and the model's answers fed directly."""

    x: np.ndarray  # (N, 28, 28, 1) float32
    y: np.ndarray  # (N,) int64
    direct: np.ndarray  # (N,) class index predicted from x itself
    folders: dict[tuple[int, int], Path]  # size -> folder of 00000.png, 00001.png, ...

    @property
    def direct_accuracy(self) -> float:
        return float(np.mean(self.direct == self.y))


@pytest.fixture(scope="session")
def digits(exported_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Digits:
    """Test digits of the default split, rendered at every size in `SIZES`."""
    from cnnedge.serve.runtime import load_model
    from cnnedge.train.data import load_default

    data = load_default()
    x, y = data.x_test[:ROUND_TRIP_DIGITS], data.y_test[:ROUND_TRIP_DIGITS]
    direct = load_model(exported_package).run(x).argmax(axis=1)
    root = tmp_path_factory.mktemp("rendered")
    folders = {}
    for size in SIZES:
        folder = root / f"{size[0]}x{size[1]}"
        folder.mkdir()
        for i, digit in enumerate(x):
            (folder / f"{i:05d}.png").write_bytes(render_black_on_white(digit, size))
        folders[size] = folder
    return Digits(x, y, direct, folders)


@pytest.fixture(scope="session")
def render_png() -> Callable[[np.ndarray, tuple[int, int]], bytes]:
    """`render_black_on_white`, for tests that render their own files."""
    return render_black_on_white


@dataclass
class Server:
    """A running `cnnedge serve` process."""

    proc: subprocess.Popen[bytes]
    url: str  # http://127.0.0.1:PORT
    log_file: Path
    max_body_bytes: int = MAX_BODY_BYTES

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")


def _start_server(
    package: Path, tmp: Path, timeout: float = 90.0, api_key: str | None = None
) -> Server:
    out, log = tmp / "stdout.txt", tmp / "stderr.txt"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("CNNEDGE_API_KEY", None)
    if api_key:
        env["CNNEDGE_API_KEY"] = api_key
    cmd = [
        sys.executable,
        "-m",
        "cnnedge",
        "serve",
        str(package),
        "--port",
        "0",
        "--max-body-bytes",
        str(MAX_BODY_BYTES),
        "--no-access-log",
    ]
    with open(out, "wb") as fh_out, open(log, "wb") as fh_err:
        proc = subprocess.Popen(cmd, stdout=fh_out, stderr=fh_err, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for line in out.read_text(errors="replace").splitlines():
            if line.startswith("listening on "):
                return Server(proc, line.split()[2], log)
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise AssertionError(
        f"cnnedge serve did not start: stdout {out.read_text()!r}, stderr {log.read_text()!r}"
    )


@pytest.fixture(scope="session")
def server(exported_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`cnnedge serve` on the exported package, on a free 127.0.0.1 port, for the session."""
    srv = _start_server(exported_package, tmp_path_factory.mktemp("image-server"))
    yield srv
    _stop(srv)


@pytest.fixture()
def keyed_server(exported_package: Path, tmp_path: Path) -> Iterator[Server]:
    """A server started with an API key (through CNNEDGE_API_KEY)."""
    srv = _start_server(exported_package, tmp_path, api_key=API_KEY)
    yield srv
    _stop(srv)


def _stop(srv: Server) -> None:
    if srv.proc.poll() is None:
        srv.proc.send_signal(signal.SIGTERM)
        try:
            srv.proc.wait(20)
        except subprocess.TimeoutExpired:
            srv.proc.kill()
            srv.proc.wait()
