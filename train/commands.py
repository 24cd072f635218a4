"""CLI commands of the training stage (typer only here; TensorFlow loads inside the command)."""

from __future__ import annotations

import typer

from cnnedge.console import exit_on_error


def register(app: typer.Typer) -> None:
    """Add the training stage's commands to `app`."""
    app.command("train")(train_command)


@exit_on_error
def train_command(
    arch: str = typer.Option("seed", "--arch", help="Preset name or architecture TOML file."),
    input_shape: str = typer.Option(
        None, "--input-shape", help="HxWxC to train at instead of the architecture's own."
    ),
    data: str = typer.Option(
        "default",
        "--data",
        help="default (5,000 bundled MNIST digits), mnist (keras.datasets, online), "
        "a .npz file (x_train, y_train, x_test, y_test) or a folder with one sub-folder per class.",
    ),
    name: str = typer.Option(None, "--name", help="Package name (default: the architecture's)."),
    out: str = typer.Option(None, "--out", help="Output folder (default: models/<name>)."),
    epochs: int = typer.Option(20, "--epochs", help="Maximum epochs."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per batch."),
    lr: float = typer.Option(0.0005, "--lr", help="Adam learning rate."),
    patience: int = typer.Option(5, "--patience", help="EarlyStopping patience on val_loss."),
    no_schedule: bool = typer.Option(
        False,
        "--no-schedule",
        help="Keep the learning rate fixed (the seed decays it x0.9 per epoch after 10).",
    ),
    no_class_weights: bool = typer.Option(
        False, "--no-class-weights", help="Weigh every class 1.0 (the seed gives 1 and 7 0.5)."
    ),
    augment: str = typer.Option(
        "keras", "--augment", help="keras (tf.data pipeline), legacy (ImageDataGenerator) or none."
    ),
    no_flip: bool = typer.Option(
        False, "--no-flip", help="No random horizontal flip (mirrored digits are not digits)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the split, the weights and augmentation."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue an interrupted run in the same output folder."
    ),
    test_fraction: float = typer.Option(
        0.2, "--test-fraction", help="Share of each class held out for testing."
    ),
) -> None:
    """Train the CNN with the seed's recipe and write a model package."""
    from cnnedge.arch import parse_shape
    from cnnedge.train.report import summary_table
    from cnnedge.train.trainer import TrainOptions, train

    options = TrainOptions(
        arch=arch,
        input_shape=parse_shape(input_shape) if input_shape else None,
        data=data,
        name=name,
        out=out,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
        schedule=not no_schedule,
        class_weights=not no_class_weights,
        augment=augment,
        flip=not no_flip,
        seed=seed,
        resume=resume,
        test_fraction=test_fraction,
    )
    try:
        result = train(options, log=typer.echo)
    except KeyboardInterrupt:
        typer.echo(
            "interrupted: the finished epochs are backed up; repeat the command with --resume "
            "to continue",
            err=True,
        )
        raise typer.Exit(130) from None
    typer.echo("")
    typer.echo(summary_table(result.metrics, result.root))
