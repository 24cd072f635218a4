"""CLI commands of the export stage (typer only here; TensorFlow and tf2onnx load inside the command)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnedge.console import exit_on_error

_DEFAULT_DIR = Path("models/seed")  # an immutable default: typer reads it from the signature


def register(app: typer.Typer) -> None:
    """Add the export stage's commands to `app`."""
    app.command("export")(export)
    app.command("benchmark")(benchmark)


@exit_on_error
def export(
    model_dir: Annotated[Path, typer.Argument(help="The model package folder.")] = _DEFAULT_DIR,
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            "-f",
            help="onnx, onnx-int8, tflite, tflite-fp16, tflite-int8, triton or all; repeatable "
            "[default: onnx and tflite]",
        ),
    ] = None,
    opset: int = typer.Option(17, "--opset", help="ONNX opset (13-18)."),
    input_shape: str = typer.Option(
        None, "--input-shape", help="HxWxC to export for, instead of the trained shape."
    ),
    calibration_size: int = typer.Option(
        300, "--calibration-size", min=1, help="Training images that calibrate the int8 formats."
    ),
) -> None:
    """Check the input shape, convert to each format, verify it against Keras, then write it."""
    from cnnedge.arch import parse_shape
    from cnnedge.export.formats import parse_formats
    from cnnedge.export.shapecheck import plan_shapes
    from cnnedge.package import Package
    from cnnedge.shapes import min_input_side

    shape = parse_shape(input_shape) if input_shape else None
    fmts = parse_formats(formats)
    # The shape check runs before TensorFlow is even imported, so a refusal is instant.
    plan = plan_shapes(Package.load(model_dir).metadata, shape)
    side = min_input_side(plan.spec, channels=plan.export_shape[2])
    typer.echo(
        f"shape check: input {'x'.join(map(str, plan.export_shape))} survives all "
        f"{len(plan.rows)} layers of {plan.spec.name} (smallest square input {side}x{side})"
    )
    if plan.reshaped:
        typer.echo(
            f"note: the trained weights fit {'x'.join(map(str, plan.export_shape))} too; the files "
            "record their own input_shape, metadata.json keeps the trained "
            f"{'x'.join(map(str, plan.trained_shape))}"
        )
    typer.echo(f"exporting {', '.join(f.name for f in fmts)} from {model_dir} ...")

    from cnnedge.export.api import export_package

    results = export_package(
        model_dir, [f.name for f in fmts], opset, shape, calibration_size=calibration_size
    )
    head = (
        f"{'format':<12} {'file':<28} {'size KB':>9} {'max |dp|':>9} {'top-1':>8} "
        f"{'accuracy':>9} {'keras':>7} {'seconds':>8}"
    )
    typer.echo(head)
    for r in results:
        v = r.verification
        typer.echo(
            f"{r.format:<12} {r.files[-1]:<28} {r.size / 1024:>9.1f} {v.max_abs_diff:>9.2g} "
            f"{v.top1_agreement:>8.2%} {v.accuracy:>9.2%} {v.keras_accuracy:>7.2%} "
            f"{r.seconds:>8.1f}"
        )
    typer.echo(
        f"verified on {results[0].verification.images} held-out images; every file above passed "
        f"its rule and is listed with its sha256 in {model_dir / 'metadata.json'}"
    )


@exit_on_error
def benchmark(
    model_dir: Annotated[Path, typer.Argument(help="The model package folder.")] = _DEFAULT_DIR,
    batch_size: int = typer.Option(32, "--batch", min=1, help="Batch size for images/s."),
    runs: int = typer.Option(3, "--runs", min=1, help="Throughput passes; the fastest counts."),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads; 0 means all cores."),
    latency_images: int = typer.Option(
        100, "--latency-images", min=1, help="Single images timed for ms/img at batch 1."
    ),
) -> None:
    """Time Keras and every exported format in the package; also writes benchmark.json."""
    from cnnedge.export.benchmark import BENCHMARK_FILE, benchmark_package, format_report

    report = benchmark_package(
        model_dir,
        batch_size=batch_size,
        latency_images=latency_images,
        runs=runs,
        threads=threads,
    )
    typer.echo(format_report(report))
    typer.echo(f"wrote {model_dir / BENCHMARK_FILE}")
