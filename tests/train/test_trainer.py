"""`train()` and `cnnedge train` end to end: the package files, resume, NaN, refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnedge.errors import ShapeError, UsageError
from cnnedge.package import Package
from cnnedge.train.trainer import BACKUP_DIR, TrainingError, TrainOptions, train

PACKAGE_FILES = ("model.keras", "metadata.json", "history.json", "curves.png", "confusion.png")


@pytest.fixture(scope="module")
def small_npz(tmp_path_factory) -> Path:
    """400 train and 100 test digits of the default data as an .npz: epochs take about a second."""
    from cnnedge.train.data import load_default

    data = load_default()
    path = tmp_path_factory.mktemp("data") / "small.npz"
    np.savez(
        path,
        x_train=data.x_train[:400],
        y_train=data.y_train[:400],
        x_test=data.x_test[:100],
        y_test=data.y_test[:100],
    )
    return path


def _fast(small_npz: Path, out: Path, **changes) -> TrainOptions:
    base = {"data": str(small_npz), "out": str(out), "epochs": 1, "augment": "none"}
    return TrainOptions(**{**base, **changes})


@pytest.mark.slow
def test_cli_train_one_epoch_writes_every_file_with_matching_hashes(tmp_path):
    from typer.testing import CliRunner

    from cnnedge.cli import build_app

    out = tmp_path / "pkg"
    result = CliRunner().invoke(build_app(), ["train", "--epochs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "epoch   1/1" in result.output, result.output
    for row in ("test accuracy", "weakest classes", "time", str(out)):
        assert row in result.output, f"{row!r} missing from\n{result.output}"
    assert sorted(p.name for p in out.iterdir()) == sorted(PACKAGE_FILES), list(out.iterdir())

    pkg = Package.load(out)
    assert sorted(pkg.files) == sorted(set(PACKAGE_FILES) - {"metadata.json"}), pkg.files
    for name in pkg.files:
        pkg.require(name)  # exists and its sha256 matches the metadata
    meta = pkg.metadata
    for key in [
        "name",
        "cnnedge_version",
        "created",
        "architecture",
        "input_shape",
        "labels",
        "preprocessing",
        "data",
        "training",
        "metrics",
        "library_versions",
        "files",
    ]:
        assert key in meta, f"metadata lacks {key}"
    assert meta["name"] == "seed" and meta["input_shape"] == [28, 28, 1]
    assert meta["labels"] == [str(i) for i in range(10)]
    assert meta["architecture"]["name"] == "seed" and len(meta["architecture"]["layers"]) == 17
    assert meta["data"] == {
        "source": "default",
        "test_fraction": 0.2,
        "seed": 0,
        "n_train": 4000,
        "n_test": 1000,
    }, meta["data"]
    assert meta["preprocessing"]["method"] == "mnist", meta["preprocessing"]
    options = meta["training"]["options"]
    assert (options["epochs"], options["batch_size"], options["lr"]) == (1, 32, 0.0005)
    assert (options["augment"], options["flip"], options["patience"]) == ("keras", True, 5)
    assert meta["training"]["steps_per_epoch"] == 4000 // 32
    assert (
        meta["training"]["class_weight"]["1"] == 0.5
        and meta["training"]["class_weight"]["0"] == 1.0
    )
    metrics = meta["metrics"]
    assert metrics["epochs_run"] == 1 and metrics["best_epoch"] == 1, metrics
    assert set(metrics["per_class_accuracy"]) == set(meta["labels"])
    assert "tensorflow" in meta["library_versions"] and "keras" in meta["library_versions"]

    history = json.loads((out / "history.json").read_text())
    assert {len(v) for v in history.values()} == {1}, history
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history), history
    from PIL import Image

    for picture in ("curves.png", "confusion.png"):
        with Image.open(out / picture) as image:
            assert image.format == "PNG" and min(image.size) >= 300, (picture, image.size)

    # The saved model reproduces the recorded accuracy on the recorded split.
    import keras

    from cnnedge.train.data import load_from_metadata

    data = load_from_metadata(meta["data"], meta["input_shape"])
    model = keras.models.load_model(pkg.require("model.keras"))
    accuracy = float(np.mean(model.predict(data.x_test, verbose=0).argmax(1) == data.y_test))
    assert abs(accuracy - metrics["test_accuracy"]) < 1e-9, (accuracy, metrics["test_accuracy"])


class _Interrupt(Exception):
    pass


def _interrupt_after(epoch_count: int, saved: dict):
    import keras

    class InterruptAfter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == epoch_count:
                saved["weights"] = [w.copy() for w in self.model.get_weights()]
                raise _Interrupt(f"simulated kill after epoch {epoch + 1}")

    return InterruptAfter()


def _recorder(seen: dict):
    import keras

    class Recorder(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["start_weights"] = [w.copy() for w in self.model.get_weights()]
            seen["iterations"] = int(self.model.optimizer.iterations.numpy())
            seen["epochs"], seen["batches"] = [], []

        def on_epoch_begin(self, epoch, logs=None):
            seen["epochs"].append(epoch)
            seen["batches"].append(0)

        def on_train_batch_end(self, batch, logs=None):
            seen["batches"][-1] += 1

    return Recorder()


@pytest.mark.slow
def test_resume_continues_an_interrupted_run_to_the_full_epoch_count(small_npz, tmp_path):
    out = tmp_path / "resumable"
    options = _fast(small_npz, out, epochs=4)
    saved: dict = {}
    with pytest.raises(_Interrupt):
        train(options, callbacks=[_interrupt_after(2, saved)], log=None)
    backup = out / BACKUP_DIR
    state = json.loads((backup / "keras" / "training_metadata.json").read_text())
    assert state["epoch"] == 2, state
    assert not (out / "model.keras").exists(), "an interrupted run must not write a model"
    first_two = json.loads((backup / "history.json").read_text())
    assert len(first_two) == 2, first_two

    with pytest.raises(UsageError, match="holds an interrupted run; continue it with --resume"):
        train(options, log=None)
    with pytest.raises(
        UsageError, match=r"differ from the interrupted run \(lr: 0.0005 -> 0.001\)"
    ):
        train(_fast(small_npz, out, epochs=4, lr=0.001, resume=True), log=None)

    seen: dict = {}
    lines: list[str] = []
    result = train(
        _fast(small_npz, out, epochs=4, resume=True), callbacks=[_recorder(seen)], log=lines.append
    )
    assert seen["epochs"] == [2, 3], f"the resumed run ran epochs {seen['epochs']}, expected [2, 3]"
    assert seen["batches"] == [12, 12], seen["batches"]
    for a, b in zip(seen["start_weights"], saved["weights"], strict=True):
        assert np.array_equal(a, b), f"restored weights differ by {np.max(np.abs(a - b))}"
    # Adam's state came back too: its step counter stands at 2 epochs of 400 // 32 steps.
    assert seen["iterations"] == 2 * (400 // 32), seen["iterations"]
    assert any("resuming after epoch 2 of 4" in line for line in lines), lines
    assert len(result.history["loss"]) == 4, result.history
    assert result.history["loss"][:2] == [row["loss"] for row in first_two]
    assert result.metrics["epochs_run"] == 4 and result.metrics["resumed_from_epoch"] == 2
    # EarlyStopping kept its state across the resume: the kept weights are the best of all 4.
    best = int(np.argmin(result.history["val_loss"])) + 1
    assert result.metrics["best_epoch"] == best, (result.metrics["best_epoch"], result.history)
    assert not backup.exists(), "the backup folder must go when the run completes"
    history = json.loads((out / "history.json").read_text())
    assert len(history["val_loss"]) == 4, history


@pytest.mark.slow
def test_non_finite_loss_stops_with_a_clear_message_and_no_model(small_npz, tmp_path):
    out = tmp_path / "nan"
    with pytest.raises(TrainingError) as info:
        train(_fast(small_npz, out, epochs=2, lr=1e12), log=None)
    message = str(info.value)
    assert "the loss became nan" in message and "no model was written" in message, message
    assert "lower --lr" in message, message
    assert not (out / "model.keras").exists() and not (out / "metadata.json").exists()
    assert not (out / BACKUP_DIR).exists(), "a NaN run leaves nothing to resume"


@pytest.mark.slow
# keras mode is what the CLI test runs; this one covers the legacy generator under fit().
def test_legacy_mode_trains_every_epoch_and_records_its_options(small_npz, tmp_path):
    augment = "legacy"
    out = tmp_path / augment
    seen: dict = {}
    options = _fast(small_npz, out, epochs=2, augment=augment, flip=False, schedule=False)
    result = train(options, callbacks=[_recorder(seen)], log=None)
    # Every epoch runs its 400 // 32 steps: the flow must not run dry after one pass.
    assert seen["batches"] == [12, 12], seen["batches"]
    options = Package.load(out).metadata["training"]["options"]
    assert (options["augment"], options["flip"], options["schedule"]) == (augment, False, False)
    assert result.metrics["epochs_run"] == 2
    assert np.isfinite(result.history["loss"]).all(), result.history


@pytest.mark.slow
def test_image_folder_trains_with_its_own_labels_and_no_digit_weights(tmp_path, image_folder):
    root = image_folder(tmp_path / "imgs", per_class=8)
    out = tmp_path / "shapes"
    result = train(
        TrainOptions(data=str(root), out=str(out), epochs=1, batch_size=4, augment="none"),
        log=None,
    )
    meta = Package.load(out).metadata
    assert meta["labels"] == ["bar", "block", "wide"], meta["labels"]
    assert meta["architecture"]["num_classes"] == 3
    assert meta["training"]["class_weight"] is None
    assert "every class weighs 1.0" in meta["training"]["class_weight_note"]
    assert meta["data"]["source"] == "folder" and meta["data"]["path"] == str(root.resolve())
    assert set(result.metrics["per_class_accuracy"]) == {"bar", "block", "wide"}


def test_collapsing_stack_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ShapeError) as info:
        train(TrainOptions(input_shape=(16, 16, 1), out=str(out)), log=None)
    assert "input 16x16 collapses at layer" in str(info.value), str(info.value)
    assert "needs at least 20x20" in str(info.value), str(info.value)
    assert not out.exists()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"epochs": 0}, "--epochs is 0"),
        ({"batch_size": 0}, "--batch-size is 0"),
        ({"lr": -1.0}, "--lr is -1.0"),
        ({"augment": "fancy"}, "--augment 'fancy' is not a mode"),
    ],
)
def test_bad_options_are_refused(tmp_path, change, expected):
    with pytest.raises(UsageError, match=expected):
        train(TrainOptions(out=str(tmp_path / "x"), **change), log=None)


def test_cli_reports_errors_as_one_line_with_exit_code_2(tmp_path):
    from typer.testing import CliRunner

    from cnnedge.cli import build_app

    result = CliRunner().invoke(
        build_app(),
        ["train", "--data", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "o")],
    )
    assert result.exit_code == 2, result.output
    assert "no such file or folder" in result.output, result.output


def test_training_modules_do_not_import_tensorflow_at_import_time():
    code = (
        "import sys\n"
        "import cnnedge.train.commands, cnnedge.train.trainer, cnnedge.train.augment\n"
        "import cnnedge.train.data, cnnedge.train.report, cnnedge.train.model\n"
        "import cnnedge.train.callbacks\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'matplotlib') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"imported at module level: {done.stdout.strip()}"


def test_early_stopping_state_survives_a_resume(tmp_path):
    import keras

    from cnnedge.train.callbacks import early_stopping_class

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    best_path = tmp_path / "best.weights.h5"
    args = {"monitor": "val_loss", "patience": 2, "restore_best_weights": True}
    first = early_stopping_class()([], best_path, **args)
    first.set_model(model)
    first.on_train_begin()
    first.on_epoch_end(0, {"val_loss": 0.1})  # the best epoch: its weights are saved
    best_weights = [w.copy() for w in model.get_weights()]
    model.set_weights([w + 1.0 for w in best_weights])
    first.on_epoch_end(1, {"val_loss": 0.5})  # worse; then the run is killed

    latest = [w + 2.0 for w in best_weights]
    second = early_stopping_class()([{"val_loss": 0.1}, {"val_loss": 0.5}], best_path, **args)
    second.set_model(model)
    second.on_train_begin()
    model.set_weights(latest)  # what BackupAndRestore does next
    assert (second.best, second.best_epoch, second.wait) == (0.1, 0, 1), vars(second)
    second.on_epoch_end(2, {"val_loss": 0.6})  # the second epoch without improvement
    assert model.stop_training, "patience 2 is spent after epochs 2 and 3"
    second.on_train_end()
    for got, want in zip(model.get_weights(), best_weights, strict=True):
        assert np.array_equal(got, want), f"restored weights differ by {np.abs(got - want).max()}"


@pytest.mark.slow
def test_a_killed_process_resumes_from_its_last_finished_epoch(small_npz, tmp_path):
    import os
    import signal
    import time

    out = tmp_path / "killed"
    args = ["--data", str(small_npz), "--augment", "none", "--out", str(out)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    # Many epochs, so the process is still running when it is killed.
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnedge", "train", "--epochs", "50", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state_file = out / BACKUP_DIR / "keras" / "training_metadata.json"
    finished, deadline = 0, time.monotonic() + 240
    try:
        while finished < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            try:
                finished = json.loads(state_file.read_text())["epoch"]
            except (OSError, ValueError, KeyError):
                continue
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert finished >= 2, f"the run never finished 2 epochs (exit {proc.returncode})"
    assert not (out / "model.keras").exists() and not (out / "metadata.json").exists()

    total = finished + 2
    result = train(
        TrainOptions(data=str(small_npz), augment="none", out=str(out), epochs=total, resume=True),
        log=None,
    )
    assert result.metrics["resumed_from_epoch"] >= 2, result.metrics
    assert len(result.history["loss"]) == total, (len(result.history["loss"]), total)
    Package.load(out).require("model.keras")


def test_progress_prints_each_epoch_and_a_step_line_in_long_epochs():
    from cnnedge.train.callbacks import HEARTBEAT_S, progress_class

    lines: list[str] = []
    progress = progress_class()(20, 1875, lines.append)
    progress.on_epoch_begin(2)
    progress.on_train_batch_end(10, {"loss": 0.5})
    assert lines == [], "no step line before HEARTBEAT_S seconds"
    progress._last -= HEARTBEAT_S  # as if the epoch had run that long
    progress.on_train_batch_end(500, {"loss": 0.25})
    assert len(lines) == 1 and "epoch   3/20  step 501/1875, loss 0.2500" in lines[0], lines
    progress.on_epoch_end(2, {"loss": 0.2, "accuracy": 0.9, "val_loss": 0.3, "learning_rate": 5e-4})
    assert lines[-1].startswith("epoch   3/20  loss 0.2000  accuracy 0.9000  val_loss 0.3000"), (
        lines
    )
    assert "lr 0.0005" in lines[-1], lines
