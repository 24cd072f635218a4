"""Float32 vs static-int8 ONNX throughput at several batch sizes, measured in one run.

    .venv/bin/python benchmarks/onnx_int8.py models/seed [--threads N] [--rounds 5]

The issue's target: int8 faster than float (about 1.8x at batch 64 on a 2-core machine) with at
most 1 point less accuracy. The two sessions run alternately, round after round, so a noisy
neighbour slows both alike; each cell is the best round.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BATCHES = (1, 8, 32, 64)


def _throughput(runner, x: np.ndarray, batch: int) -> float:
    start = time.perf_counter()
    runner.predict(x, batch)
    return len(x) / (time.perf_counter() - start)


def main() -> None:
    from cnnedge.export.runners import OnnxRunner
    from cnnedge.package import Package
    from cnnedge.train.data import load_from_metadata

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", nargs="?", default="models/seed")
    parser.add_argument("--threads", type=int, default=0, help="0: all cores")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    pkg = Package.load(args.model_dir)
    data = load_from_metadata(pkg.metadata.get("data", {}), pkg.input_shape)
    x, y = data.x_test, data.y_test  # (N, H, W, C), (N,)
    runners = {
        "onnx": OnnxRunner(pkg.require("model.onnx"), args.threads),
        "onnx-int8": OnnxRunner(pkg.require("model.int8.onnx"), args.threads),
    }
    accuracy = {k: float(np.mean(r.predict(x).argmax(1) == y)) for k, r in runners.items()}
    best = {(k, b): 0.0 for k in runners for b in BATCHES}
    for _ in range(args.rounds):
        for batch in BATCHES:
            sample = x if batch > 1 else x[:200]
            for name, runner in runners.items():
                runner.predict(sample[: 2 * batch], batch)  # warm-up for this shape
                best[name, batch] = max(best[name, batch], _throughput(runner, sample, batch))

    print(f"{'format':<10} {'accuracy':>9} " + " ".join(f"{f'img/s b{b}':>10}" for b in BATCHES))
    for name in runners:
        cells = " ".join(f"{best[name, b]:>10,.0f}" for b in BATCHES)
        print(f"{name:<10} {accuracy[name]:>9.2%} {cells}")
    ratios = " ".join(f"{best['onnx-int8', b] / best['onnx', b]:>9.2f}x" for b in BATCHES)
    print(f"{'int8/fp32':<10} {'':>9} {ratios}")
    drop = (accuracy["onnx"] - accuracy["onnx-int8"]) * 100
    print(
        f"at batch 64: int8 {best['onnx-int8', 64] / best['onnx', 64]:.2f}x the float "
        f"throughput, {drop:+.2f} points accuracy lost ({len(y)} test images, "
        f"{args.threads or os.cpu_count()} threads, best of {args.rounds} rounds)"
    )


if __name__ == "__main__":
    main()
