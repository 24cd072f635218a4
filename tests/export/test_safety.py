"""The accuracy gate for quantised formats and atomic writing when an export fails midway."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cnnedge.export.api import export_package
from cnnedge.export.verify import VerificationError
from cnnedge.package import Package

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


def test_good_calibration_passes_the_same_gate(package_copy):
    (result,) = export_package(package_copy, ["onnx-int8"], calibration_size=200)
    v = result.verification
    assert v.passed and v.accuracy_drop <= 0.01, v
    assert Package.load(package_copy).files["model.int8.onnx"]["calibration_images"] == 200


@pytest.fixture()
def exported_copy(all_exported, tmp_path):
    dest = tmp_path / "seed"
    shutil.copytree(all_exported[0], dest)
    return dest


@pytest.mark.parametrize(
    ("fail_at", "error"),
    [("tflite-fp16", RuntimeError), ("onnx", KeyboardInterrupt)],
    ids=["error-after-three-formats", "interrupt-in-first"],
)
def test_failure_midway_leaves_previous_files_byte_identical(
    exported_copy, monkeypatch, fail_at, error
):
    import cnnedge.export.api as api

    before = _snapshot(exported_copy)
    real_measure, seen = api.measure, []

    def measure(fmt, *args):
        seen.append(fmt.name)
        # The file of `fmt` is fully converted and staged when the verifier runs.
        staged = [p.name for p in exported_copy.rglob(".*") if p.is_file()]
        assert staged, "expected a staged temporary file during verification"
        if fmt.name == fail_at:
            raise error("injected")
        return real_measure(fmt, *args)

    monkeypatch.setattr(api, "measure", measure)
    with pytest.raises(error, match="injected"):
        export_package(exported_copy, ["all"])
    assert seen[-1] == fail_at, seen
    after = _snapshot(exported_copy)
    leftovers = sorted(set(after) - set(before))
    assert leftovers == [], f"partial or temporary files left: {leftovers}"
    changed = sorted(k for k in before if before[k] != after.get(k))
    assert changed == [], f"files changed by a failed export: {changed}"


def test_failed_first_triton_export_leaves_no_folders(package_copy, monkeypatch):
    import cnnedge.export.api as api

    def measure(fmt, *args):
        raise RuntimeError("injected")

    monkeypatch.setattr(api, "measure", measure)
    with pytest.raises(RuntimeError, match="injected"):
        export_package(package_copy, ["triton"])
    assert not (package_copy / "triton").exists()
    assert sorted(p.name for p in package_copy.iterdir() if p.name.startswith(".")) == []
