"""The CLI shell: fast help without TensorFlow, `cnnedge check`, exit codes."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from cnnedge.cli import build_app

HEAVY = ("tensorflow", "keras", "tf2onnx", "onnx")


def _imported_heavy(code: str) -> list[str]:
    probe = (
        f"{code}\nimport sys\nprint('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("HEAVY:"))
    return [m for m in line[len("HEAVY:") :].split(",") if m]


def test_importing_cli_loads_no_framework():
    assert _imported_heavy("import cnnedge.cli") == []


def test_help_loads_no_framework():
    code = (
        "import sys\nfrom cnnedge.cli import build_app\n"
        "try:\n    build_app()(['--help'])\nexcept SystemExit:\n    pass"
    )
    assert _imported_heavy(code) == []


def test_help_lists_commands():
    result = CliRunner().invoke(build_app(), ["--help"])
    assert result.exit_code == 0
    for command in ("check", "train", "export", "benchmark", "serve", "predict"):
        assert command in result.output, result.output


def test_check_prints_table_and_minimum():
    result = CliRunner().invoke(build_app(), ["check", "--arch", "seed"])
    assert result.exit_code == 0, result.output
    assert "total params: 394,954 (trainable 393,930, non-trainable 1,024)" in result.output
    assert "smallest square input: 20x20" in result.output


def test_check_refuses_collapse_with_exit_2():
    result = CliRunner().invoke(build_app(), ["check", "--input-shape", "8x8x1"])
    assert result.exit_code == 2
    assert "collapses at layer 6 Conv2D(3x3)" in result.output
    assert "needs at least 20x20" in result.output


def test_check_bad_arch_exit_2():
    result = CliRunner().invoke(build_app(), ["check", "--arch", "nope"])
    assert result.exit_code == 2 and "neither a preset" in result.output


def test_version():
    result = CliRunner().invoke(build_app(), ["--version"])
    assert result.exit_code == 0 and result.output.startswith("cnnedge ")
