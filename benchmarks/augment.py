"""Images per second through the seed's augmentation: tf.data + Keras layers vs ImageDataGenerator.

Both produce the seed's batches (rotation 10 deg, shifts 10%, zoom 0.9-1.1 per axis, shear
0.2 deg, horizontal flip, fill "nearest") from the default training split, batch 32. Each round
times 300 batches of every pipeline after warm-up; the rounds alternate, so a load change on a
shared machine hits all pipelines alike, and the table shows the median round. Usage:

    python benchmarks/augment.py [--batches 300] [--rounds 3] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Iterator
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _rate(batches: Iterator[Any], count: int, batch_size: int, warmup: int = 5) -> float:
    """Images per second over `count` batches, after `warmup` batches (tracing, thread start)."""
    for _ in range(warmup):
        next(batches)
    start = time.perf_counter()
    for _ in range(count):
        images, _labels = next(batches)
        _ = images.shape  # make sure the batch exists (tf tensors are produced eagerly anyway)
    return count * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import keras

    from cnnedge.train.augment import keras_dataset, legacy_flow
    from cnnedge.train.data import load_default

    data = load_default()
    y = keras.utils.to_categorical(data.y_train, 10)
    pipeline = iter(keras_dataset(data.x_train, y, args.batch_size, augment=True, seed=0))
    plain = iter(keras_dataset(data.x_train, y, args.batch_size, augment=False, seed=0))
    flow = legacy_flow(data.x_train, y, args.batch_size, flip=True, seed=0)

    pipelines = {
        "tf.data + Keras layers (--augment keras)": pipeline,
        "ImageDataGenerator.flow (--augment legacy)": iter(flow),
        "tf.data, no augmentation (--augment none)": plain,
    }
    rounds: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(args.rounds):
        for name, batches in pipelines.items():
            rounds[name].append(_rate(batches, args.batches, args.batch_size))
    rates = {name: statistics.median(values) for name, values in rounds.items()}
    print(
        f"{args.rounds} rounds x {args.batches} batches of {args.batch_size} (28x28x1), "
        f"cpu count {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}"
    )
    width = max(len(k) for k in rates)
    print(f"{'input pipeline':<{width}}  {'images/s (median)':>17}  {'rounds':>24}")
    for name, rate in rates.items():
        spread = " ".join(f"{v:,.0f}" for v in rounds[name])
        print(f"{name:<{width}}  {rate:>17,.0f}  {spread:>24}")
    keras_rate, legacy_rate = list(rates.values())[:2]
    ratios = [k / g for k, g in zip(*list(rounds.values())[:2], strict=True)]
    print(
        f"ratio tf.data / legacy: {keras_rate / legacy_rate:.1f}x (per round "
        f"{', '.join(f'{r:.1f}x' for r in ratios)}; aim: at least 3x)"
    )


if __name__ == "__main__":
    main()
