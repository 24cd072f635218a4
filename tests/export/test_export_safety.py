"""The accuracy gate for quantised formats and atomic writing when an export fails midway."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cnnedge.export.api import export_package
from cnnedge.export.verify import VerificationError

pytestmark = pytest.mark.slow


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` (relative path -> bytes)."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("fmt", ["onnx-int8", "tflite-int8"])
def test_bad_calibration_fails_the_int8_gate_with_numbers(package_copy, fmt):
    before = _snapshot(package_copy)
    # Near-black images: activation ranges far too small, so real digits saturate.
    garbage = np.full((64, 28, 28, 1), 0.002, dtype=np.float32)
    with pytest.raises(VerificationError) as info:
        export_package(package_copy, [fmt], calibration_images=garbage)
    message = str(info.value)
    assert f"{fmt} (" in message and "failed verification on 1000 held-out images" in message
    assert "accuracy" in message and "points lost" in message and "rule:" in message, message
    lost = float(message.split("(+")[1].split(" points")[0])
    assert lost > 1.0, message
    assert _snapshot(package_copy) == before  # nothing written, metadata unchanged


@pytest.fixture()
def exported_copy(all_exported, tmp_path):
    dest = tmp_path / "seed"
    shutil.copytree(all_exported[0], dest)
    return dest


@pytest.mark.parametrize(
    ("start", "formats", "fail_at", "error"),
    [
        ("exported", ["all"], "tflite", RuntimeError),
        ("fresh", ["onnx", "triton"], "triton", KeyboardInterrupt),
    ],
    ids=["error-over-previous-export", "interrupt-in-fresh-package"],
)
def test_failure_midway_leaves_previous_files_byte_identical(
    all_exported, package_copy, tmp_path, monkeypatch, start, formats, fail_at, error
):
    import cnnedge.export.api as api

    root = package_copy
    if start == "exported":
        root = tmp_path / "exported" / "seed"
        shutil.copytree(all_exported[0], root)
    before = _snapshot(root)
    real_measure, seen = api.measure, []

    def measure(fmt, *args):
        seen.append(fmt.name)
        # The file of `fmt` is fully converted and staged when the verifier runs.
        staged = [p.name for p in root.rglob(".*") if p.is_file()]
        assert staged, "expected a staged temporary file during verification"
        if fmt.name == fail_at:
            raise error("injected")
        return real_measure(fmt, *args)

    monkeypatch.setattr(api, "measure", measure)
    with pytest.raises(error, match="injected"):
        export_package(root, formats)
    assert seen[-1] == fail_at and len(seen) >= 2, seen  # formats before it had passed
    after = _snapshot(root)
    leftovers = sorted(set(after) - set(before))
    assert leftovers == [], f"partial or temporary files left: {leftovers}"
    changed = sorted(k for k in before if before[k] != after.get(k))
    assert changed == [], f"files changed by a failed export: {changed}"
    folders = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir())
    assert start == "exported" or folders == [], f"folders left: {folders}"
