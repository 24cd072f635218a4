"""Keras callbacks of the training loop, built on demand so importing this module stays light.

Each factory returns a class (Keras is imported inside), so `cnnedge --help` never loads it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

Log = Callable[[str], None]
# Seconds between step lines inside one epoch.
HEARTBEAT_S = 30.0


def nan_guard_class() -> type:
    """TerminateOnNaN that remembers where the loss went non-finite instead of printing it."""
    import keras

    class NanGuard(keras.callbacks.TerminateOnNaN):
        def __init__(self) -> None:
            super().__init__()  # graceful stop (raise_error=False is the default; older Keras lacks the argument)
            self.failure: tuple[int, int, float] | None = None
            self._epoch = 0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._epoch = epoch

        def on_batch_end(self, batch: int, logs: Any = None) -> None:
            loss = (logs or {}).get("loss")
            if loss is not None and not np.isfinite(loss) and self.failure is None:
                self.failure = (self._epoch, batch, float(loss))
                self.model.stop_training = True

    return NanGuard


def progress_class() -> type:
    """One line per epoch (losses, accuracies, rate, seconds); a step line every HEARTBEAT_S."""
    import keras

    class Progress(keras.callbacks.Callback):
        def __init__(self, epochs: int, steps: int, say: Log) -> None:
            super().__init__()
            self._epochs, self._steps, self._say = epochs, steps, say
            self._epoch, self._start, self._last = 0, 0.0, 0.0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._epoch, self._start = epoch, time.perf_counter()
            self._last = self._start

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            now = time.perf_counter()
            if now - self._last >= HEARTBEAT_S and batch + 1 < self._steps:
                self._last = now
                loss = (logs or {}).get("loss")
                shown = f", loss {float(loss):.4f}" if loss is not None else ""
                self._say(
                    f"epoch {self._epoch + 1:>3}/{self._epochs}  step {batch + 1}/{self._steps}"
                    f"{shown}  {now - self._start:.0f}s"
                )

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            logs = logs or {}
            parts = [f"epoch {epoch + 1:>3}/{self._epochs}"]
            for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
                if key in logs:
                    parts.append(f"{key} {float(logs[key]):.4f}")
            lr = logs.get("learning_rate")
            if lr is not None:
                parts.append(f"lr {float(lr):.3g}")
            parts.append(f"{time.perf_counter() - self._start:.1f}s")
            self._say("  ".join(parts))

    return Progress


def history_log_class() -> type:
    """Collects each epoch's logs and writes the run's history so far into the backup folder."""
    import keras

    from cnnedge.package import write_json_atomic

    class HistoryLog(keras.callbacks.Callback):
        def __init__(self, path: Path, prior: Sequence[Mapping[str, float]]) -> None:
            super().__init__()
            self._path, self._prior = path, list(prior)
            self.epochs: list[dict[str, float]] = []

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.epochs.append({k: float(v) for k, v in (logs or {}).items()})
            write_json_atomic(self._path, [*self._prior, *self.epochs])

    return HistoryLog


def early_stopping_class() -> type:
    """EarlyStopping whose state survives `--resume`: best val_loss, patience count, best weights.

    The best weights are saved to `best_path` whenever val_loss improves; a resumed run reads
    them back, so it stops and restores exactly as the uninterrupted run would have.
    """
    import keras

    class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
        def __init__(
            self, prior: Sequence[Mapping[str, float]], best_path: Path, **kwargs: Any
        ) -> None:
            super().__init__(**kwargs)
            self._prior, self._best_path = list(prior), best_path

        def on_train_begin(self, logs: Any = None) -> None:
            super().on_train_begin(logs)
            losses = [row.get(self.monitor) for row in self._prior]
            if not losses or any(v is None or not np.isfinite(v) for v in losses):
                return
            values = [float(v) for v in losses if v is not None]
            best = int(np.argmin(values))
            self.best, self.best_epoch = values[best], best
            self.wait = len(values) - 1 - best
            if self.restore_best_weights and self._best_path.is_file():
                # Runs before BackupAndRestore, which then loads the latest weights. Build the
                # optimizer first (as BackupAndRestore does) so its saved state has a home.
                optimizer = getattr(self.model, "optimizer", None)
                if optimizer is not None and not optimizer.built:
                    optimizer.build(self.model.trainable_variables)
                self.model.load_weights(self._best_path)
                self.best_weights = self.model.get_weights()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            super().on_epoch_end(epoch, logs)
            if self.restore_best_weights and self.best_epoch == epoch:
                self.model.save_weights(self._best_path, overwrite=True)

    return ResumableEarlyStopping
