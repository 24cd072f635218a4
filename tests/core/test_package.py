"""The model-package format: atomic writes, hashes, metadata checks."""

from __future__ import annotations

import json

import pytest

from cnnedge.errors import PackageError
from cnnedge.package import (
    Package,
    atomic_path,
    file_record,
    sha256_file,
    update_metadata,
    write_metadata,
)


def _package(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"weights")
    write_metadata(
        tmp_path,
        {
            "name": "p",
            "input_shape": [28, 28, 1],
            "labels": list("0123456789"),
            "files": {"model.bin": file_record(tmp_path / "model.bin")},
        },
    )
    return tmp_path


def test_load_and_require(tmp_path):
    pkg = Package.load(_package(tmp_path))
    assert pkg.name == "p" and pkg.input_shape == (28, 28, 1) and len(pkg.labels) == 10
    assert pkg.require("model.bin") == tmp_path / "model.bin"
    assert pkg.files["model.bin"]["size"] == 7


def test_changed_file_fails_hash_check(tmp_path):
    pkg = Package.load(_package(tmp_path))
    (tmp_path / "model.bin").write_bytes(b"tampered")
    with pytest.raises(PackageError, match=r"has sha256 .* metadata.json says"):
        pkg.require("model.bin")


def test_missing_file_and_missing_metadata(tmp_path):
    with pytest.raises(PackageError, match=r"metadata.json is missing"):
        Package.load(tmp_path)
    pkg = Package.load(_package(tmp_path))
    (tmp_path / "model.bin").unlink()
    with pytest.raises(PackageError, match=r"model.bin is missing"):
        pkg.require("model.bin")


def test_foreign_or_newer_metadata_is_refused(tmp_path):
    (tmp_path / "metadata.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(PackageError, match=r"not written by cnnedge"):
        Package.load(tmp_path)
    _package(tmp_path)
    meta = json.loads((tmp_path / "metadata.json").read_text())
    (tmp_path / "metadata.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(PackageError, match=r"format_version 99"):
        Package.load(tmp_path)


def test_update_metadata_rewrites_atomically(tmp_path):
    _package(tmp_path)
    pkg = update_metadata(tmp_path, lambda m: m["files"].pop("model.bin"))
    assert pkg.files == {} and pkg.metadata["format"] == "cnnedge-package"


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half-writ")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and sha256_file(target) == file_record(target)["sha256"]
    # Group and others can read it (a server may run as another user).
    assert target.stat().st_mode & 0o044 == 0o044, oct(target.stat().st_mode)
