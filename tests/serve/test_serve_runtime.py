"""`load_model`: the checks that stop a broken package before it is served."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cnnedge.errors import PackageError, UsageError
from cnnedge.serve.runtime import load_model


def _copy(src: Path, tmp_path: Path) -> Path:
    dest = tmp_path / src.name
    shutil.copytree(src, dest)
    return dest


@pytest.mark.slow
def test_fp32_and_int8_load_and_agree_on_digits(exported_package: Path, digits: np.ndarray) -> None:
    fp32 = load_model(exported_package, "fp32", threads=1)
    int8 = load_model(exported_package, "int8", threads=1)
    assert fp32.name == "seed" and fp32.input_shape == (28, 28, 1) and len(fp32.labels) == 10
    assert fp32.path.name == "model.onnx" and int8.path.name == "model.int8.onnx"
    p32, p8 = fp32.run(digits), int8.run(digits)
    assert p32.shape == (64, 10) and p32.dtype == np.float32
    sums = np.abs(p32.sum(1) - 1).max()
    assert sums < 1e-4, f"probabilities do not sum to 1 (off by {sums})"
    agree = float(np.mean(p32.argmax(1) == p8.argmax(1)))
    assert agree >= 0.9, f"int8 agrees with fp32 on only {agree:.0%} of 64 digits"


def test_sha256_mismatch_is_refused(exported_package: Path, tmp_path: Path) -> None:
    pkg = _copy(exported_package, tmp_path)
    with open(pkg / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(PackageError, match=r"model.onnx has sha256 .* metadata.json says"):
        load_model(pkg)


def test_missing_variant_says_how_to_make_it(exported_package: Path, tmp_path: Path) -> None:
    pkg = _copy(exported_package, tmp_path)
    (pkg / "model.int8.onnx").unlink()
    with pytest.raises(PackageError, match=r"model.int8.onnx is missing .*cnnedge export"):
        load_model(pkg, "int8")


def test_input_shape_disagreeing_with_metadata_is_refused(
    exported_package: Path, tmp_path: Path
) -> None:
    pkg = _copy(exported_package, tmp_path)
    meta = json.loads((pkg / "metadata.json").read_text())
    meta["input_shape"] = [32, 32, 1]
    (pkg / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(
        PackageError, match=r"shape \(N, 28, 28, 1\); metadata.json says \(N, 32, 32, 1\)"
    ):
        load_model(pkg)


def test_label_count_disagreeing_with_output_is_refused(
    exported_package: Path, tmp_path: Path
) -> None:
    pkg = _copy(exported_package, tmp_path)
    meta = json.loads((pkg / "metadata.json").read_text())
    meta["labels"] = meta["labels"][:5]
    (pkg / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(PackageError, match=r"lists 5 labels, so it should be \(N, 5\)"):
        load_model(pkg)


def test_bad_variant_and_threads_are_usage_errors(exported_package: Path) -> None:
    with pytest.raises(UsageError, match="variant 'fp16' is unknown; use one of fp32, int8"):
        load_model(exported_package, "fp16")
    with pytest.raises(UsageError, match="--threads 0 must be at least 1"):
        load_model(exported_package, threads=0)


def test_run_checks_the_image_shape(reference) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"shape \(1, 28, 28\); this model takes \(N, 28, 28, 1\)"):
        reference.run(np.zeros((1, 28, 28), np.float32))
