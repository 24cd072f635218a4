"""Prometheus metrics in the text exposition format, written by hand (no client library needed).

Everything is updated on the event loop's thread, so plain integers and floats suffice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

Labels = tuple[tuple[str, str], ...]


def _key(labels: dict[str, str]) -> Labels:
    return tuple(sorted(labels.items()))


def _fmt_labels(labels: Labels, extra: tuple[str, str] | None = None) -> str:
    items = list(labels) + ([extra] if extra else [])
    if not items:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in items)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    """A monotonically increasing count per label set."""

    kind = "counter"

    def __init__(self, name: str, help: str) -> None:
        self.name, self.help = name, help
        self._values: dict[Labels, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = _key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(_key(labels), 0.0)

    def samples(self) -> list[str]:
        return [f"{self.name}{_fmt_labels(k)} {_num(v)}" for k, v in sorted(self._values.items())]


class Gauge(Counter):
    """A value that goes up and down."""

    kind = "gauge"

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self.inc(-amount, **labels)


class Histogram:
    """Cumulative buckets, sum and count per label set."""

    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: Sequence[float]) -> None:
        self.name, self.help = name, help
        self.buckets = tuple(buckets)
        self._data: dict[Labels, list[float]] = {}  # counts per bucket (+Inf last), sum, count

    def observe(self, value: float, **labels: str) -> None:
        key = _key(labels)
        data = self._data.get(key)
        if data is None:
            data = self._data[key] = [0.0] * (len(self.buckets) + 3)
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                data[i] += 1
                break
        else:
            data[len(self.buckets)] += 1
        data[-2] += value
        data[-1] += 1

    def count(self, **labels: str) -> float:
        data = self._data.get(_key(labels))
        return data[-1] if data else 0.0

    def samples(self) -> list[str]:
        lines = []
        for key, data in sorted(self._data.items()):
            running = 0.0
            for i, bound in enumerate((*self.buckets, math.inf)):
                running += data[i]
                le = ("le", _num(bound))
                lines.append(f"{self.name}_bucket{_fmt_labels(key, le)} {_num(running)}")
            lines.append(f"{self.name}_sum{_fmt_labels(key)} {_num(data[-2])}")
            lines.append(f"{self.name}_count{_fmt_labels(key)} {_num(data[-1])}")
        return lines


class ServerMetrics:
    """The server's metrics: requests by outcome, latencies, queue time, batch sizes, in flight."""

    def __init__(self) -> None:
        self.requests = Counter(
            "cnnedge_requests_total", "HTTP requests by route, method and status code."
        )
        self.latency = Histogram(
            "cnnedge_request_duration_seconds",
            "Time from request start to response end, by route.",
            _LATENCY_BUCKETS,
        )
        self.inflight = Gauge("cnnedge_requests_inflight", "HTTP requests being handled now.")
        self.queue_seconds = Histogram(
            "cnnedge_queue_duration_seconds",
            "Time a request waited in the batch queue before its batch ran.",
            _LATENCY_BUCKETS,
        )
        self.inference_seconds = Histogram(
            "cnnedge_inference_duration_seconds",
            "onnxruntime time per batch.",
            _LATENCY_BUCKETS,
        )
        self.batch_size = Histogram(
            "cnnedge_batch_size", "Images per onnxruntime call (dynamic batching).", _BATCH_BUCKETS
        )
        self.inferences = Counter(
            "cnnedge_inferences_total", "Infer requests by model and outcome (success or error)."
        )

    def render(self) -> str:
        """The exposition text for `GET /metrics`."""
        lines: list[str] = []
        for metric in (
            self.requests,
            self.inferences,
            self.inflight,
            self.latency,
            self.queue_seconds,
            self.inference_seconds,
            self.batch_size,
        ):
            lines.append(f"# HELP {metric.name} {metric.help}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            lines.extend(metric.samples())
        return "\n".join(lines) + "\n"


__all__ = ["Counter", "Gauge", "Histogram", "ServerMetrics"]
