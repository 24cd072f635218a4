"""`cnnedge predict`: classify image files with the packaged ONNX model (no TensorFlow).

Every image goes through `cnnedge.preprocess` with the package's own `metadata["preprocessing"]`,
so the model is fed exactly as it was trained. Failures are reported per file; the command exits
non-zero after all files are reported if any of them failed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from cnnedge.console import exit_on_error
from cnnedge.errors import CnnedgeError, UsageError

DEFAULT_MODEL_DIR = Path("models/seed")
# A directory contributes the files that look like images; non-allowed formats among them are
# reported as errors rather than skipped, so a user sees why a GIF gave no answer.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".tif", ".tiff", ".bmp", ".webp")
_BATCH = 64  # images per onnxruntime call


@dataclass(frozen=True)
class _Outcome:
    """One input's result: `probs` (num_classes,) or an error message."""

    name: str
    probs: Any = None
    error: str | None = None
    exit_code: int = 0


def top_k(probs: Sequence[float], labels: Sequence[str], k: int) -> list[dict[str, Any]]:
    """The k most probable classes of one image, best first.

    Args:
        probs: (num_classes,) probabilities.
        labels: class labels, index i for column i.
        k: how many to keep (clamped to the class count).

    Returns:
        [{"label": str, "confidence": float}, ...].
    """
    import numpy as np

    p = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-p, kind="stable")[: max(1, min(k, len(labels)))]
    return [{"label": labels[i], "confidence": round(float(p[i]), 6)} for i in order]


def prediction(probs: Sequence[float], labels: Sequence[str], k: int) -> dict[str, Any]:
    """`{"label", "confidence", "top_k"}` for one image, as the CLI and the server report it."""
    best = top_k(probs, labels, k)
    return {"label": best[0]["label"], "confidence": best[0]["confidence"], "top_k": best}


def expand_inputs(inputs: Iterable[str]) -> list[str]:
    """Paths as given, directories replaced by their image files (sorted), "-" kept for stdin."""
    out: list[str] = []
    for item in inputs:
        path = Path(item)
        if item != "-" and path.is_dir():
            files = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            )
            if not files:
                raise UsageError(
                    f"directory {path} has no image files ({', '.join(IMAGE_SUFFIXES)}); "
                    "pass image files or a folder of them"
                )
            out.extend(str(p) for p in files)
        else:
            out.append(item)
    return out


def split_model_dir(paths: Sequence[str]) -> tuple[Path, list[str]]:
    """Take the leading MODEL_DIR off the arguments when it is a package folder."""
    if paths and paths[0] != "-" and (Path(paths[0]) / "metadata.json").is_file():
        return Path(paths[0]), list(paths[1:])
    return DEFAULT_MODEL_DIR, list(paths)


def classify_files(
    model: Any, names: Sequence[str], k: int, invert: str | None = None
) -> list[_Outcome]:
    """Preprocess and classify each named file ("-" is stdin); failures become outcomes too."""
    import dataclasses

    import numpy as np

    from cnnedge.preprocess import PreprocessConfig, preprocess_image

    config = PreprocessConfig.from_metadata(model.metadata)
    if invert is not None:
        config = dataclasses.replace(config, invert=invert)
    outcomes: list[_Outcome] = []
    ready: list[tuple[int, np.ndarray]] = []  # (index in outcomes, (H, W, C))
    for name in names:
        try:
            data = _read(name)
            ready.append((len(outcomes), preprocess_image(data, config)))
            outcomes.append(_Outcome(name))
        except CnnedgeError as exc:
            outcomes.append(_Outcome(name, error=str(exc), exit_code=exc.exit_code))
    for start in range(0, len(ready), _BATCH):
        chunk = ready[start : start + _BATCH]
        probs = model.run(np.stack([x for _, x in chunk]))  # (n, num_classes)
        for (index, _), row in zip(chunk, probs, strict=True):
            outcomes[index] = dataclasses.replace(outcomes[index], probs=row)
    return outcomes


def _read(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    path = Path(name)
    if not path.is_file():
        raise UsageError(f"{name}: no such file; pass an image file, a folder of them, or -")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{name}: cannot be read ({exc.strerror})") from None


def format_table(outcomes: Sequence[_Outcome], labels: Sequence[str], k: int) -> str:
    """A plain-text table: file, predicted label, confidence, top k."""
    width = max([len("file"), *(len(o.name) for o in outcomes)])
    lines = [f"{'file':<{width}}  label  confidence  top {k}"]
    for o in outcomes:
        if o.error is not None:
            lines.append(f"{o.name:<{width}}  error: {o.error}")
            continue
        p = prediction(o.probs, labels, k)
        tops = ", ".join(f"{t['label']} {t['confidence']:.3f}" for t in p["top_k"])
        lines.append(f"{o.name:<{width}}  {p['label']:<5}  {p['confidence']:>10.3f}  {tops}")
    return "\n".join(lines)


def format_json_lines(outcomes: Sequence[_Outcome], labels: Sequence[str], k: int) -> str:
    """One JSON object per line: file, label, confidence, top_k; or file and error."""
    lines = []
    for o in outcomes:
        obj = (
            {"file": o.name, "error": o.error}
            if o.error is not None
            else {"file": o.name, **prediction(o.probs, labels, k)}
        )
        lines.append(json.dumps(obj))
    return "\n".join(lines)


@exit_on_error
def predict(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="[MODEL_DIR] IMAGE...",
            help="A package folder (default models/seed), then image files, folders of them, "
            "or - for stdin.",
        ),
    ],
    variant: str = typer.Option("fp32", "--variant", help="fp32 (model.onnx) or int8."),
    k: int = typer.Option(3, "--top-k", help="How many classes to list per image."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line and image."),
    invert: str = typer.Option(
        None, "--invert", help="auto|always|never: override the package's inversion rule."
    ),
) -> None:
    """Classify images (PNG/JPEG) with a package's ONNX model; exit 2 if any image failed."""
    from cnnedge.serve.runtime import load_model

    model_dir, images = split_model_dir(paths)
    if not images:
        raise UsageError(
            f"no images given (model folder {model_dir}); usage: cnnedge predict [MODEL_DIR] IMAGE..."
        )
    if k < 1:
        raise UsageError(f"--top-k {k} must be at least 1")
    if invert is not None and invert not in ("auto", "always", "never"):
        raise UsageError(f"--invert {invert!r} must be auto, always or never")
    if images.count("-") > 1:
        raise UsageError("stdin (-) can be given only once")
    names = expand_inputs(images)
    model = load_model(model_dir, variant)
    outcomes = classify_files(model, names, k, invert)
    render = format_json_lines if as_json else format_table
    typer.echo(render(outcomes, model.labels, k))
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        typer.echo(f"error: {len(failed)} of {len(outcomes)} images failed", err=True)
        raise typer.Exit(max(o.exit_code for o in failed))


def register(app: typer.Typer) -> None:
    """Add the `predict` command to `app`."""
    app.command("predict")(predict)
