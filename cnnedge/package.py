"""The model package: a folder of model files plus `metadata.json`, the only contract between stages.

Layout of `models/<name>/`:

    metadata.json     what every consumer reads (see `Package`)
    model.keras       written by `cnnedge train`
    model.onnx, ...   written by `cnnedge export`, each listed under "files" with its sha256

Every write goes to a temporary file in the same folder and is renamed into place, so a killed
process leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnedge.errors import PackageError

METADATA = "metadata.json"
FORMAT = "cnnedge-package"
FORMAT_VERSION = 1


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    Args:
        target: the final file path.

    Returns:
        A context manager yielding the temporary path to write.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Same folder, so the rename is atomic; keep the suffix, since some writers check it.
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; model files are meant to be read by a server running as another user.
    os.chmod(tmp, 0o644)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(target: str | Path, data: bytes) -> None:
    """Write `data` to `target` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(target: str | Path, obj: Any) -> None:
    """Write `obj` as indented JSON to `target` atomically."""
    write_bytes_atomic(target, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def library_versions(*dists: str) -> dict[str, str]:
    """Python's version and each installed distribution's, for metadata.json (absent ones left out)."""
    import platform
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for dist in dists:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return versions


def file_record(path: str | Path, **extra: Any) -> dict[str, Any]:
    """The "files" entry for one file: size, sha256 and any extra fields (verification, ...)."""
    path = Path(path)
    return {"size": path.stat().st_size, "sha256": sha256_file(path), **extra}


@dataclass(frozen=True)
class Package:
    """A model package folder and its parsed metadata.

    Keys of `metadata` that every stage may rely on: format, format_version, name,
    cnnedge_version, input_shape [H, W, C], labels [str], preprocessing {...},
    architecture {...}, training {...}, data {...}, metrics {...}, library_versions {...},
    files {filename: {size, sha256, ...}}.
    """

    root: Path
    metadata: Mapping[str, Any]

    @classmethod
    def load(cls, root: str | Path) -> Package:
        """Read and check `root/metadata.json`.

        Args:
            root: the package folder, e.g. models/seed.

        Returns:
            The package.
        """
        root = Path(root)
        meta_path = root / METADATA
        if not meta_path.is_file():
            raise PackageError(
                f"{root} is not a model package: {METADATA} is missing; "
                "create one with `cnnedge train --out DIR`"
            )
        try:
            metadata = json.loads(meta_path.read_text("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PackageError(
                f"{meta_path} is not valid JSON ({exc}); re-run `cnnedge train`"
            ) from None
        if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
            raise PackageError(
                f'{meta_path} has no "format": "{FORMAT}"; it was not written by cnnedge'
            )
        if metadata.get("format_version", 0) > FORMAT_VERSION:
            raise PackageError(
                f"{meta_path} has format_version {metadata['format_version']}; this cnnedge reads "
                f"up to {FORMAT_VERSION}, upgrade cnnedge"
            )
        for key in ("name", "input_shape", "labels"):
            if key not in metadata:
                raise PackageError(
                    f"{meta_path} lacks the required key {key!r}; re-run `cnnedge train`"
                )
        return cls(root=root, metadata=metadata)

    @property
    def name(self) -> str:
        return str(self.metadata["name"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        h, w, c = self.metadata["input_shape"]
        return int(h), int(w), int(c)

    @property
    def labels(self) -> list[str]:
        return [str(x) for x in self.metadata["labels"]]

    @property
    def files(self) -> Mapping[str, Any]:
        return self.metadata.get("files", {})

    def path(self, filename: str) -> Path:
        return self.root / filename

    def require(self, filename: str, verify: bool = True) -> Path:
        """The path of a listed file, after checking it exists and (optionally) its sha256."""
        path = self.path(filename)
        if not path.is_file():
            raise PackageError(
                f"{path} is missing; the package lists {sorted(self.files) or 'no files'}"
            )
        record = self.files.get(filename)
        if verify:
            if record is None:
                raise PackageError(
                    f"{path} is not listed in {METADATA}; re-run the stage that writes it"
                )
            actual = sha256_file(path)
            if actual != record.get("sha256"):
                raise PackageError(
                    f"{path} has sha256 {actual[:12]}..., {METADATA} says "
                    f"{str(record.get('sha256'))[:12]}...; the file changed after it was written, "
                    "re-run the stage that writes it"
                )
        return path


def write_metadata(root: str | Path, metadata: Mapping[str, Any]) -> None:
    """Write a full metadata dict to `root/metadata.json` atomically, stamping the format."""
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, **metadata}
    write_json_atomic(Path(root) / METADATA, data)


def update_metadata(root: str | Path, change: Callable[[dict[str, Any]], None]) -> Package:
    """Load the metadata, apply `change` to a copy in place, and write it back atomically.

    Args:
        root: the package folder.
        change: a function that edits the metadata dict.

    Returns:
        The package as written.
    """
    pkg = Package.load(root)
    data = json.loads(json.dumps(pkg.metadata))
    change(data)
    write_metadata(root, data)
    return Package.load(root)
