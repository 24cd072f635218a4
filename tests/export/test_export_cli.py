"""`cnnedge export` and `cnnedge benchmark` through the real typer app."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from cnnedge.cli import build_app
from cnnedge.package import Package


@pytest.mark.slow
def test_export_onnx_writes_verifies_and_prints_a_table(package_copy):
    result = CliRunner().invoke(build_app(), ["export", str(package_copy), "--format", "onnx"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("shape check: input 28x28x1 survives all 17 layers of seed"), lines
    assert "smallest square input 20x20" in lines[0]
    row = next(line for line in lines if line.startswith("onnx "))
    diff = float(row.split()[3])
    assert diff <= 1e-4 and "100.00%" in row, row
    assert "verified on 1000 held-out images" in result.output
    pkg = Package.load(package_copy)
    pkg.require("model.onnx")
    assert "model.tflite" not in pkg.files  # only what was asked


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--format", "onnx-fp8"], "unknown export format 'onnx-fp8'; choose from onnx, onnx-int8"),
        (["--opset", "9"], "opset 9 is outside what tf2onnx converts to (13-18)"),
        (["--input-shape", "28x28xfoo"], "is not HxWxC with positive integers"),
    ],
)
def test_bad_options_exit_2_with_the_rule(package_copy, args, needle):
    result = CliRunner().invoke(build_app(), ["export", str(package_copy), *args])
    assert result.exit_code == 2, result.output
    assert needle in result.output, result.output
    assert not (package_copy / "model.onnx").exists()


def test_missing_package_exits_1(tmp_path):
    result = CliRunner().invoke(build_app(), ["export", str(tmp_path / "nope")])
    assert result.exit_code == 1, result.output
    assert "metadata.json is missing" in result.output


def test_commands_are_registered_and_light():
    import subprocess
    import sys

    code = (
        "import sys; from cnnedge.cli import build_app; build_app(); "
        "print(sorted(m for m in ('tensorflow', 'keras', 'tf2onnx', 'onnx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
    result = CliRunner().invoke(build_app(), ["--help"])
    assert "export" in result.output and "benchmark" in result.output, result.output


@pytest.mark.slow
def test_benchmark_table_and_json(exported_package, tmp_path):
    root = tmp_path / "seed"
    shutil.copytree(exported_package, root)
    result = CliRunner().invoke(
        build_app(), ["benchmark", str(root), "--runs", "1", "--latency-images", "10"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["format", "file", "status"], lines[0]
    body = [line.split()[0] for line in lines[2:5]]
    assert body == ["keras", "onnx", "onnx-int8"], lines
    assert "onnx-int8 vs onnx:" in result.output
    report = json.loads((root / "benchmark.json").read_text())
    rows = {r["format"]: r for r in report["rows"]}
    assert list(rows) == ["keras", "onnx", "onnx-int8"], list(rows)
    assert report["batch_size"] == 32 and report["images"] == 1000
    for row in rows.values():
        assert row["status"] == "ok", row
        assert row["ms_per_image_batch1"] > 0 and row["images_per_s"] > 0, row
    assert rows["keras"]["top1_agreement"] == 1.0 and rows["keras"]["max_abs_diff"] == 0.0
    assert rows["onnx"]["max_abs_diff"] <= 1e-4, rows["onnx"]
    assert rows["onnx-int8"]["size_kb"] < rows["onnx"]["size_kb"] / 3, rows


@pytest.mark.slow
def test_benchmark_reports_a_tampered_file_as_failed(exported_package, tmp_path):
    from cnnedge.export.benchmark import benchmark_package

    root = tmp_path / "seed"
    shutil.copytree(exported_package, root)
    with open(root / "model.int8.onnx", "ab") as fh:
        fh.write(b"\0")
    report = benchmark_package(root, latency_images=2, runs=1, write=False)
    assert report.row("onnx").status == "ok"
    status = report.row("onnx-int8").status
    assert status.startswith("FAIL: PackageError") and "sha256" in status, status


@pytest.mark.slow
def test_unloadable_model_is_a_package_error(package_copy):
    from cnnedge.package import file_record, update_metadata

    (package_copy / "model.keras").write_bytes(b"not a zip archive")
    record = file_record(package_copy / "model.keras")
    update_metadata(package_copy, lambda meta: meta["files"].update({"model.keras": record}))
    result = CliRunner().invoke(build_app(), ["export", str(package_copy), "--format", "onnx"])
    assert result.exit_code == 1, result.output
    assert "cannot be loaded with safe_mode=True" in result.output, result.output
    assert not (package_copy / "model.onnx").exists()
