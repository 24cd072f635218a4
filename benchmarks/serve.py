"""Served throughput and latency vs in-process onnxruntime, measured in one run.

    .venv/bin/python benchmarks/serve.py [--package models/seed] [--seconds 3]

The server (`cnnedge serve`, default flags) and the load generator run on separate cores: the
server process is pinned with `os.sched_setaffinity` to the first half of this process's cores
(at least one), the load generator to the rest, and the in-process baseline runs on the server's
cores with the same onnxruntime thread count. The load generator is an asyncio client that keeps
C keep-alive connections busy with binary (Triton) requests of one image each.

Goals (issue 4): served images/s at concurrency 32 >= 80% of in-process batch-32 images/s, and
served p50 at concurrency 1 within 1 ms of in-process batch-1 latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LEVELS = (1, 8, 32, 64)


def _cores() -> tuple[set[int], set[int]]:
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("needs at least 2 cores to pin server and load generator apart")
    half = max(1, len(cores) // 2)
    return set(cores[:half]), set(cores[half:])


def _in_process(model: object, seconds: float) -> dict[str, float]:
    """Batch-1 p50 latency and batch-1/batch-32 images/s of `model.run`, for `seconds` each."""
    out: dict[str, float] = {}
    for batch in (1, 32):
        x = np.random.default_rng(0).random((batch, 28, 28, 1), dtype=np.float32)
        times = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            model.run(x)  # type: ignore[attr-defined]
            times.append(time.perf_counter() - t)
        out[f"b{batch}_p50_ms"] = float(np.percentile(times, 50) * 1e3)
        out[f"b{batch}_ips"] = batch * len(times) / sum(times)
    return out


def _request(x: np.ndarray, model: str) -> bytes:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    body = head + x.astype("<f4").tobytes()
    return (
        f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: bench\r\n"
        f"Inference-Header-Content-Length: {len(head)}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _one_connection(
    host: str, port: int, request: bytes, stop_at: float, latencies: list[float]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"server answered {head.splitlines()[0]!r}")
            latencies.append(time.perf_counter() - t)
    finally:
        writer.close()


async def _load(host: str, port: int, request: bytes, conns: int, seconds: float) -> list[float]:
    warm: list[float] = []
    await asyncio.gather(
        *(
            _one_connection(host, port, request, time.perf_counter() + 0.5, warm)
            for _ in range(conns)
        )
    )
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds
    await asyncio.gather(
        *(_one_connection(host, port, request, stop_at, latencies) for _ in range(conns))
    )
    return latencies


def _stats(hostport: str, model: str) -> tuple[int, int]:
    import urllib.request

    with urllib.request.urlopen(f"http://{hostport}/v2/models/{model}/stats") as r:
        stats = json.load(r)["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])  # images, batches


def _start_server(
    package: str, cores: set[int], threads: int, variant: str
) -> tuple[subprocess.Popen, str]:
    cmd = [
        sys.executable,
        "-m",
        "cnnedge",
        "serve",
        package,
        "--port",
        "0",
        "--threads",
        str(threads),
        "--variant",
        variant,
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # access log stays on (the default), discarded here
        text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, cores),
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("listening on "):
            return proc, line.split()[2].removeprefix("http://")
    raise SystemExit(f"server did not start (exit {proc.wait()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", default="models/seed")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per level")
    parser.add_argument("--variant", default="fp32", choices=["fp32", "int8"])
    args = parser.parse_args()
    filename = "model.onnx" if args.variant == "fp32" else "model.int8.onnx"
    if not (Path(args.package) / filename).is_file():
        raise SystemExit(
            f"{args.package}/{filename} is missing; run `cnnedge train` and `cnnedge export`"
        )
    server_cores, client_cores = _cores()
    threads = len(server_cores)
    from cnnedge.package import Package
    from cnnedge.serve.runtime import load_model

    name = Package.load(args.package).name
    os.sched_setaffinity(0, server_cores)  # this thread; onnxruntime's pool threads inherit it
    model = load_model(args.package, args.variant, threads=threads)
    proc, hostport = _start_server(args.package, server_cores, threads, args.variant)
    host, port = hostport.rsplit(":", 1)
    request = _request(np.random.default_rng(1).random((1, 28, 28, 1), dtype=np.float32), name)
    rows = []
    try:
        for c in LEVELS:
            # The baseline is measured again just before each level, on the server's cores
            # (the server idles meanwhile), so both see the same background load.
            os.sched_setaffinity(0, server_cores)
            base = _in_process(model, min(1.0, args.seconds))
            os.sched_setaffinity(0, client_cores)
            before = _stats(hostport, name)
            lat = asyncio.run(_load(host, int(port), request, c, args.seconds))
            after = _stats(hostport, name)
            mean_batch = (after[0] - before[0]) / max(1, after[1] - before[1])
            p50, p99 = np.percentile(lat, [50, 99]) * 1e3
            rows.append((c, len(lat) / args.seconds, p50, p99, mean_batch, base))
    finally:
        proc.terminate()
        proc.wait(30)

    print(f"server pinned to cores {sorted(server_cores)} ({threads} onnxruntime threads), load "
          f"generator to cores {sorted(client_cores)} (os.sched_setaffinity); {args.variant}; "
          f"{args.seconds:.0f} s "
          "per level; binary requests of 1 image; in-process measured on the server's cores just "
          "before each level")  # fmt: skip
    print(f"{'concurrency':>11} {'images/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'mean batch':>10} "
          f"{'in-proc b1 p50':>15} {'in-proc b32/s':>14} {'served/in-proc':>15}")  # fmt: skip
    for c, ips, p50, p99, batch, base in rows:
        print(f"{c:>11} {ips:>9.0f} {p50:>8.3f} {p99:>8.3f} {batch:>10.1f} "
              f"{base['b1_p50_ms']:>15.3f} {base['b32_ips']:>14.0f} "
              f"{ips / base['b32_ips']:>15.0%}")  # fmt: skip
    c1 = rows[0]
    c32 = next(r for r in rows if r[0] == 32)
    ratio = c32[1] / c32[5]["b32_ips"]
    best = c32[1] / max(c32[5]["b32_ips"], c32[5]["b1_ips"])
    gap = c1[2] - c1[5]["b1_p50_ms"]
    print(f"c=32 throughput ratio {ratio:.2f} vs in-process batch 32 (goal >= 0.80: "
          f"{'met' if ratio >= 0.8 else 'NOT met'}); {best:.2f} vs the better of in-process "
          f"batch 1 ({c32[5]['b1_ips']:.0f}/s) and batch 32")  # fmt: skip
    print(f"c=1 p50 gap {gap:.3f} ms over in-process batch 1 "
          f"(goal <= 1 ms: {'met' if gap <= 1 else 'NOT met'})")  # fmt: skip


if __name__ == "__main__":
    main()
