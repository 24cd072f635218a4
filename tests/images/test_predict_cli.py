"""`cnnedge predict` as a user runs it: a real subprocess on the exported package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow


def _predict(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", "cnnedge", "predict", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_round_trip_accuracy_through_the_cli(exported_package: Path, digits: Any) -> None:
    # All sizes in one process: the three folders, 1,000 rendered test digits each.
    folders = [str(folder) for folder in digits.folders.values()]
    result = _predict(str(exported_package), *folders, "--json")
    assert result.returncode == 0, result.stderr.decode()
    rows = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert len(rows) == len(digits.folders) * len(digits.y)
    for size, path in digits.folders.items():
        folder = str(path)
        got = {Path(r["file"]).name: int(r["label"]) for r in rows if r["file"].startswith(folder)}
        predicted = np.array([got[f"{i:05d}.png"] for i in range(len(digits.y))])
        accuracy = float(np.mean(predicted == digits.y))
        loss = digits.direct_accuracy - accuracy
        print(f"{size}: cli {accuracy:.3f}, direct {digits.direct_accuracy:.3f}, loss {loss:+.3f}")
        assert loss <= 0.02, (
            f"{size[0]}x{size[1]} PNGs through cnnedge predict: accuracy {accuracy:.3f}, direct "
            f"{digits.direct_accuracy:.3f}: lost {100 * loss:.1f} points (limit 2)"
        )


def test_reports_every_file_then_fails(exported_package: Path, digits: Any, tmp_path: Path) -> None:
    good = digits.folders[(56, 56)] / "00000.png"
    gif = tmp_path / "digit.gif"
    Image.open(good).save(gif, format="GIF")
    missing = tmp_path / "missing.png"
    result = _predict(str(exported_package), str(gif), str(good), str(missing), "--json")
    assert result.returncode == 2, f"exit {result.returncode}; stderr {result.stderr.decode()}"
    rows = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [r["file"] for r in rows] == [str(gif), str(good), str(missing)]
    assert "GIF is not accepted" in rows[0]["error"]
    assert rows[1]["label"] == str(digits.direct[0])
    assert len(rows[1]["top_k"]) == 3 and rows[1]["top_k"][0]["confidence"] == rows[1]["confidence"]
    assert "no such file" in rows[2]["error"]
    assert "2 of 3 images failed" in result.stderr.decode()


def test_table_stdin_top_k_and_int8(exported_package: Path, digits: Any, render_png: Any) -> None:
    png = render_png(digits.x[1], (280, 280))
    result = _predict(str(exported_package), "-", "--top-k", "5", "--variant", "int8", stdin=png)
    assert result.returncode == 0, result.stderr.decode()
    header, line = result.stdout.decode().splitlines()
    assert header.split()[:4] == ["file", "label", "confidence", "top"]
    fields = line.split()
    assert fields[0] == "-"
    assert fields[1] == str(digits.direct[1]), f"int8 answer {fields[1]}, fp32 {digits.direct[1]}"
    assert len(line.split(",")) == 5, f"five classes listed: {line!r}"


def test_bad_usage_is_explained(exported_package: Path) -> None:
    result = _predict(str(exported_package))
    assert result.returncode == 2
    assert "no images given" in result.stderr.decode()
    result = _predict(str(exported_package), "x.png", "--top-k", "0")
    assert result.returncode == 2 and "--top-k 0" in result.stderr.decode()
