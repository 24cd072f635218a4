"""The seed's training recipe with every part switchable: `train(TrainOptions(...))`.

Recipe (SPEC "Training recipe"): Adam(lr) on categorical cross-entropy with one-hot labels,
`steps_per_epoch = len(x_train) // batch_size` on a repeated dataset, validation on the test split,
EarlyStopping(val_loss, patience, restore_best_weights), the learning-rate schedule (unchanged for
10 epochs, then x0.9 per epoch) and class weights 0.5 for digits 1 and 7.

Every epoch is backed up in `<out>/.backup/` (Keras BackupAndRestore, the history so far and the
best weights for EarlyStopping); `resume=True` continues from the last finished epoch with the
same early-stopping state, and the folder is removed when the run ends.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cnnedge.errors import CnnedgeError, UsageError

BACKUP_DIR = ".backup"
SEED_CLASS_WEIGHTS: Mapping[int, float] = {1: 0.5, 7: 0.5}  # the seed's, for digits 0-9
SCHEDULE_KEEP_EPOCHS = 10
SCHEDULE_FACTOR = 0.9
_DIGITS = tuple(str(i) for i in range(10))
# Options that may differ between an interrupted run and its `--resume`.
_RESUME_FREE = ("resume", "epochs")

Log = Callable[[str], None]


class TrainingError(CnnedgeError):
    """Training itself failed (a non-finite loss): nothing was written."""


@dataclass(frozen=True)
class TrainOptions:
    """Everything `cnnedge train` takes; the defaults are the seed's recipe."""

    arch: str = "seed"
    input_shape: tuple[int, int, int] | None = None
    data: str = "default"
    name: str | None = None
    out: str | None = None
    epochs: int = 20
    batch_size: int = 32
    lr: float = 0.0005
    patience: int = 5
    schedule: bool = True
    class_weights: bool = True
    augment: str = "keras"
    flip: bool = True
    seed: int = 0
    resume: bool = False
    test_fraction: float = 0.2

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (stored as `metadata["training"]["options"]`)."""
        data = asdict(self)
        data["input_shape"] = list(self.input_shape) if self.input_shape else None
        return data

    def check(self) -> None:
        """Raise `UsageError` for an option outside its range, naming the value and the rule."""
        from cnnedge.train.augment import check_mode

        for name, value in (("epochs", self.epochs), ("batch-size", self.batch_size)):
            if value < 1:
                raise UsageError(f"--{name} is {value}; it must be at least 1")
        if self.patience < 0:
            raise UsageError(f"--patience is {self.patience}; use 0 or more epochs")
        if not (self.lr > 0 and np.isfinite(self.lr)):
            raise UsageError(f"--lr is {self.lr}; use a positive rate such as 0.0005")
        check_mode(self.augment)


@dataclass(frozen=True)
class TrainResult:
    """A finished run: the package folder, its metrics and the per-epoch history."""

    root: Path
    metrics: Mapping[str, Any]
    history: Mapping[str, Sequence[float]]
    files: tuple[str, ...] = field(default=())


def seed_learning_rate(epoch: int, base_lr: float) -> float:
    """The seed's `lr if epoch < 10 else lr * 0.9`, compounded, as a function of the epoch alone.

    Written in closed form (base * 0.9 ** (epoch - 9) from epoch 10) so that a resumed run gets
    the same rate as an uninterrupted one even though the optimizer's rate is rebuilt.
    """
    if epoch < SCHEDULE_KEEP_EPOCHS:
        return base_lr
    return base_lr * SCHEDULE_FACTOR ** (epoch - SCHEDULE_KEEP_EPOCHS + 1)


def class_weights_for(labels: Sequence[str], enabled: bool) -> tuple[dict[int, float] | None, str]:
    """The seed's class weights for the 10 digits, or none, with a sentence saying which."""
    if not enabled:
        return None, "off (--no-class-weights)"
    if tuple(labels) != _DIGITS:
        return None, (
            f"off: the seed's weights (0.5 for digits 1 and 7) are for the labels 0-9, "
            f"this data has {len(labels)} other labels, so every class weighs 1.0"
        )
    weights = {i: float(SEED_CLASS_WEIGHTS.get(i, 1.0)) for i in range(10)}
    return weights, "seed: 0.5 for digits 1 and 7, 1.0 for the others"


def train(
    options: TrainOptions,
    *,
    callbacks: Sequence[Any] = (),
    log: Log | None = print,
) -> TrainResult:
    """Train a model package with `options` and write it to `options.out` (or models/<name>).

    Args:
        options: the run's options.
        callbacks: extra Keras callbacks, run after the built-in ones (tests use them).
        log: where progress lines go (None: silent).

    Returns:
        The result; the package folder holds model.keras, metadata.json, history.json,
        curves.png and confusion.png.
    """
    from cnnedge.arch import load_arch
    from cnnedge.shapes import check_classifier
    from cnnedge.train.data import load_data

    say = log or (lambda _line: None)
    started = time.perf_counter()
    options.check()
    spec = load_arch(options.arch)
    if options.input_shape:
        spec = spec.with_input_shape(tuple(options.input_shape))  # type: ignore[arg-type]
    check_classifier(spec)  # refuse a collapsing stack before loading data or TensorFlow
    name = options.name or spec.name
    root = Path(options.out) if options.out else Path("models") / name
    backup = root / BACKUP_DIR

    data = load_data(options.data, spec.input_shape, options.test_fraction, options.seed)
    if data.num_classes != spec.num_classes:
        say(
            f"classes: the data has {data.num_classes}; the output layer is sized for them "
            f"instead of the architecture's {spec.num_classes}"
        )
        spec = spec.with_num_classes(data.num_classes)
        check_classifier(spec)
    steps = len(data.x_train) // options.batch_size
    if steps < 1:
        raise UsageError(
            f"--batch-size {options.batch_size} is larger than the {len(data.x_train)} training "
            "images; use a smaller batch"
        )
    weights, weights_note = class_weights_for(data.labels, options.class_weights)
    prior = _prepare_backup(backup, options)
    say(
        f"data {data.source}: {len(data.x_train)} train / {len(data.x_test)} test images, "
        f"{data.num_classes} classes; architecture {spec.name} on "
        f"{'x'.join(map(str, spec.input_shape))}; augment {options.augment}"
        f"{'' if options.flip or options.augment == 'none' else ' (no flip)'}; "
        f"class weights {weights_note}"
    )

    fitted = _fit(spec, data, options, steps, weights, backup, prior, callbacks, say)
    model, history, best_epoch, resumed_from = fitted
    metrics = _evaluate(model, data)
    metrics.update(
        epochs_run=len(history.get("loss", [])),
        best_epoch=best_epoch,
        resumed_from_epoch=resumed_from,
        seconds=round(time.perf_counter() - started, 2),
    )
    training = {
        "options": options.to_dict(),
        "steps_per_epoch": steps,
        "optimizer": {"name": "Adam", "learning_rate": options.lr},
        "loss": "categorical_crossentropy",
        "class_weight": {str(k): v for k, v in weights.items()} if weights else None,
        "class_weight_note": weights_note,
        "schedule": (
            f"lr for epochs 1-{SCHEDULE_KEEP_EPOCHS}, then x{SCHEDULE_FACTOR} per epoch"
            if options.schedule
            else "off"
        ),
        "early_stopping": {"monitor": "val_loss", "patience": options.patience},
    }
    files = _write_package(root, name, spec, data, model, history, metrics, training)
    shutil.rmtree(backup, ignore_errors=True)
    return TrainResult(root=root, metrics=metrics, history=history, files=files)


# --------------------------------------------------------------------------------- fitting


def _fit(
    spec: Any,
    data: Any,
    options: TrainOptions,
    steps: int,
    weights: dict[int, float] | None,
    backup: Path,
    prior: list[dict[str, float]],
    extra: Sequence[Any],
    say: Log,
) -> tuple[Any, dict[str, list[float]], int, int]:
    """Build, compile and fit; returns (model, full history, best epoch 1-based, resumed from)."""
    import keras

    from cnnedge.train.augment import training_input
    from cnnedge.train.callbacks import (
        early_stopping_class,
        history_log_class,
        nan_guard_class,
        progress_class,
    )
    from cnnedge.train.model import build_model, compile_model

    model = compile_model(build_model(spec, seed=options.seed), options.lr)
    y_train = keras.utils.to_categorical(data.y_train, data.num_classes)  # (N, K) one-hot
    y_test = keras.utils.to_categorical(data.y_test, data.num_classes)
    inputs = training_input(
        options.augment, data.x_train, y_train, options.batch_size, options.flip, options.seed
    )
    if prior:
        say(f"resuming after epoch {len(prior)} of {options.epochs} from {backup}")
    early = early_stopping_class()(
        prior,
        backup / "best.weights.h5",
        monitor="val_loss",
        patience=options.patience,
        restore_best_weights=True,
    )
    nan_guard = nan_guard_class()()
    callbacks: list[Any] = [nan_guard, progress_class()(options.epochs, steps, say), early]
    if options.schedule:
        base = options.lr
        callbacks.append(
            keras.callbacks.LearningRateScheduler(
                lambda epoch, _lr: seed_learning_rate(epoch, base)
            )
        )
    # History first, then the weights: a kill between the two leaves history ahead, and
    # `_prepare_backup` trims it to the epoch the weights belong to.
    history_log = history_log_class()(backup / "history.json", prior)
    callbacks.append(history_log)
    callbacks.append(keras.callbacks.BackupAndRestore(str(backup / "keras")))
    callbacks.extend(extra)
    model.fit(
        inputs,
        steps_per_epoch=steps,
        epochs=options.epochs,
        validation_data=(data.x_test, y_test),
        class_weight=weights,
        callbacks=callbacks,
        shuffle=False,  # the input is shuffled already (tf.data or the generator)
        verbose=0,
    )
    if nan_guard.failure:
        shutil.rmtree(backup, ignore_errors=True)
        epoch, batch, loss = nan_guard.failure
        raise TrainingError(
            f"the loss became {loss} at epoch {epoch + 1}, batch {batch + 1}; training stopped "
            f"(TerminateOnNaN) and no model was written; lower --lr (now {options.lr:g}) or "
            "check the data for NaN or huge values"
        )
    history = _merge_history(prior, history_log.epochs)
    best = int(early.best_epoch) + 1 if early.best_weights is not None else len(history["loss"])
    return model, history, best, len(prior)


def _prepare_backup(backup: Path, options: TrainOptions) -> list[dict[str, float]]:
    """Check the backup folder against `resume`; return the epochs already finished."""
    options_file = backup / "options.json"
    state_file = backup / "keras" / "training_metadata.json"
    if state_file.is_file() and not options.resume:
        raise UsageError(
            f"{backup} holds an interrupted run; continue it with --resume, or delete the "
            "folder to start again"
        )
    if not state_file.is_file():
        # No finished epoch (or a run that failed before its first): start afresh.
        shutil.rmtree(backup, ignore_errors=True)
        backup.mkdir(parents=True)
        options_file.write_text(json.dumps(options.to_dict(), indent=2))
        return []
    saved = json.loads(options_file.read_text()) if options_file.is_file() else {}
    now = options.to_dict()
    changed = [k for k in now if k not in _RESUME_FREE and k in saved and saved[k] != now[k]]
    if changed:
        diffs = ", ".join(f"{k}: {saved[k]!r} -> {now[k]!r}" for k in changed)
        raise UsageError(
            f"--resume with options that differ from the interrupted run ({diffs}); repeat the "
            f"original options, or delete {backup} to start again"
        )
    finished = int(json.loads(state_file.read_text())["epoch"])
    history_file = backup / "history.json"
    epochs = json.loads(history_file.read_text()) if history_file.is_file() else []
    if len(epochs) < finished:
        raise UsageError(
            f"{history_file} has {len(epochs)} epochs but the weights are from epoch {finished}; "
            f"the backup is inconsistent, delete {backup} to start again"
        )
    return list(epochs[:finished])


def _merge_history(
    prior: Sequence[Mapping[str, float]], epochs: Sequence[Mapping[str, float]]
) -> dict[str, list[float]]:
    """Per-epoch log dicts (before and after a resume) -> {metric: [value per epoch]}."""
    rows = [*prior, *epochs]
    keys = ["loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"]
    keys += sorted({k for row in rows for k in row} - set(keys))
    return {
        k: [float(row[k]) for row in rows if k in row] for k in keys if any(k in r for r in rows)
    }


def _evaluate(model: Any, data: Any) -> dict[str, Any]:
    """Test accuracy and loss, per-class accuracy and the confusion matrix."""
    import keras

    from cnnedge.train.report import confusion_matrix, per_class_accuracy

    probs = model.predict(data.x_test, batch_size=256, verbose=0)  # (N, K)
    y_test = keras.utils.to_categorical(data.y_test, data.num_classes)
    loss = model.evaluate(data.x_test, y_test, batch_size=256, verbose=0, return_dict=True)
    predicted = probs.argmax(axis=1)
    matrix = confusion_matrix(data.y_test, predicted, data.num_classes)
    return {
        "test_accuracy": float(np.mean(predicted == data.y_test)),
        "test_loss": float(loss["loss"]),
        "per_class_accuracy": per_class_accuracy(matrix, data.labels),
        "confusion_matrix": matrix.tolist(),
    }


# ---------------------------------------------------------------------------------- output


def _write_package(
    root: Path,
    name: str,
    spec: Any,
    data: Any,
    model: Any,
    history: Mapping[str, Sequence[float]],
    metrics: Mapping[str, Any],
    training: Mapping[str, Any],
) -> tuple[str, ...]:
    """Write every file atomically, metadata.json last (it lists the others' hashes)."""
    from cnnedge import __version__
    from cnnedge.package import (
        atomic_path,
        file_record,
        library_versions,
        write_json_atomic,
        write_metadata,
    )
    from cnnedge.preprocess import PreprocessConfig
    from cnnedge.train.report import plot_confusion, plot_curves

    root.mkdir(parents=True, exist_ok=True)
    with atomic_path(root / "model.keras") as tmp:
        model.save(tmp)
    write_json_atomic(root / "history.json", dict(history))
    plot_curves(history, root / "curves.png")
    plot_confusion(np.asarray(metrics["confusion_matrix"]), data.labels, root / "confusion.png")
    files = ("model.keras", "history.json", "curves.png", "confusion.png")
    write_metadata(
        root,
        {
            "name": name,
            "cnnedge_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "architecture": spec.to_dict(),
            "input_shape": list(spec.input_shape),
            "labels": list(data.labels),
            "preprocessing": PreprocessConfig.for_input_shape(spec.input_shape).to_dict(),
            "data": dict(data.meta),
            "training": dict(training),
            "metrics": dict(metrics),
            "library_versions": library_versions(
                "tensorflow", "keras", "numpy", "matplotlib", "mlxtend", "scipy"
            ),
            "files": {f: file_record(root / f) for f in files},
        },
    )
    return files
