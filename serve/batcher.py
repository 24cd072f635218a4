"""Dynamic batching, as Triton does it: merge concurrent requests into one onnxruntime call.

Requests wait in a bounded asyncio queue. One collector task takes the first, then keeps adding
requests until the batch holds `max_batch_size` images or `max_queue_delay_us` has passed since
the first one was queued, and runs the batch in a worker thread so the event loop keeps serving.
A request that would not fit stays for the next batch, so no batch exceeds the maximum.

An idle server should not make a lone request wait: the collector waits for more only while
other requests are already being received (`busy()` counts them), so at concurrency 1 a request
runs at once and under load batches fill up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnedge.serve.metrics import ServerMetrics
from cnnedge.serve.runtime import OnnxModel


class QueueFullError(Exception):
    """The batch queue holds `max_queue` requests already; the caller answers 503."""


class ShuttingDownError(Exception):
    """The server is draining; no new requests are queued."""


@dataclass(frozen=True)
class BatchConfig:
    """Dynamic batching limits (the `cnnedge serve` flags of the same names)."""

    max_batch_size: int = 32
    max_queue_delay_us: int = 500
    max_queue: int = 256


@dataclass
class _Item:
    x: np.ndarray  # (n, H, W, C) float32
    future: asyncio.Future[np.ndarray]
    queued_ns: int


@dataclass
class ModelStats:
    """Triton-style counters for `/v2/models/{m}/stats` (durations in nanoseconds)."""

    success_count: int = 0
    success_ns: int = 0
    fail_count: int = 0
    fail_ns: int = 0
    queue_ns: int = 0
    compute_ns: int = 0
    inference_count: int = 0  # images
    execution_count: int = 0  # onnxruntime calls
    last_inference_ms: int = 0
    batches: dict[int, list[int]] = field(default_factory=dict)  # size -> [count, compute ns]


class ServedModel:
    """A loaded model behind its dynamic batcher; what route handlers use.

    Attributes:
        name, labels, input_shape, metadata: from the package.
        model: the `OnnxModel`.
        config: the `BatchConfig`.
        stats: Triton-style `ModelStats`.
    """

    def __init__(
        self,
        model: OnnxModel,
        config: BatchConfig,
        metrics: ServerMetrics,
        busy: Callable[[], int] = lambda: 0,
    ) -> None:
        self.model = model
        self.config = config
        self.stats = ModelStats()
        self._metrics = metrics
        self._busy = busy
        # A deque and one wake-up future: cheaper per request than asyncio.Queue + wait_for.
        self._pending: deque[_Item] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._unfinished = 0  # queued or running requests
        self._idle: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def labels(self) -> list[str]:
        return self.model.labels

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.model.input_shape

    @property
    def metadata(self) -> Any:
        return self.model.metadata

    @property
    def ready(self) -> bool:
        return self._task is not None and not self._closing

    async def start(self) -> None:
        """Start the collector task on the running loop (called at app start-up)."""
        self._idle = asyncio.Event()
        self._idle.set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"infer-{self.name}")
        self._task = asyncio.get_running_loop().create_task(self._collect())

    async def stop(self) -> None:
        """Finish everything queued, then stop the collector and its thread."""
        self._closing = True
        if self._idle is not None:
            await self._idle.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def infer(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for `x`, run in a dynamic batch with other requests.

        Args:
            x: (n, H, W, C) float32 with 1 <= n <= max_batch_size.

        Returns:
            (n, num_classes) float32.
        """
        if self._task is None or self._closing:
            raise ShuttingDownError(f"model {self.name} is not accepting requests (shutting down)")
        n = int(x.shape[0])
        if not 1 <= n <= self.config.max_batch_size:
            raise ValueError(
                f"batch of {n} images; this server takes 1 to {self.config.max_batch_size} "
                "per request (--max-batch-size)"
            )
        if len(self._pending) >= self.config.max_queue:
            raise QueueFullError(
                f"model {self.name} has {self.config.max_queue} requests queued (--max-queue); "
                "retry later"
            )
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._pending.append(_Item(x, future, time.perf_counter_ns()))
        self._unfinished += 1
        if self._idle is not None:
            self._idle.clear()
        self._wake()
        return await future

    def _wake(self) -> None:
        if self._wakeup is not None:
            _settle(self._wakeup)

    async def _wait(self, loop: asyncio.AbstractEventLoop, timeout: float | None) -> None:
        # Until infer() appends a request or `timeout` seconds pass.
        waiter: asyncio.Future[None] = loop.create_future()
        self._wakeup = waiter
        timer = None
        if timeout is not None:
            timer = loop.call_later(timeout, _settle, waiter)
        try:
            await waiter
        finally:
            self._wakeup = None
            if timer is not None:
                timer.cancel()

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        pending, limit = self._pending, self.config.max_batch_size
        while True:
            while not pending:
                await self._wait(loop, None)
            first = pending.popleft()
            batch = [first]
            size = int(first.x.shape[0])
            deadline = first.queued_ns + self.config.max_queue_delay_us * 1000
            while size < limit:
                if not pending:
                    if self._busy() <= len(batch):  # nobody else is being received
                        break
                    left = (deadline - time.perf_counter_ns()) / 1e9
                    if left <= 0:
                        break
                    await self._wait(loop, left)
                    if not pending:  # the delay passed
                        break
                n = int(pending[0].x.shape[0])
                if size + n > limit:
                    break  # it opens the next batch
                batch.append(pending.popleft())
                size += n
            await self._run(loop, batch, size)
            self._unfinished -= len(batch)
            if self._unfinished == 0 and self._idle is not None:
                self._idle.set()

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Item], size: int) -> None:
        start = time.perf_counter_ns()
        live = [it for it in batch if not it.future.done()]  # the client may have gone
        if not live:
            return
        x = live[0].x if len(live) == 1 else np.concatenate([it.x for it in live])  # (N, H, W, C)
        error: BaseException | None = None
        try:
            probs = await loop.run_in_executor(self._executor, self.model.run, x)
        except Exception as exc:  # a runtime failure is the server's fault: the caller says 500
            error = exc
        end = time.perf_counter_ns()
        self._record(batch, size, start, end, error is None)
        offset = 0
        for it in live:
            n = int(it.x.shape[0])
            if not it.future.done():
                if error is None:
                    it.future.set_result(probs[offset : offset + n])
                else:
                    it.future.set_exception(error)
            offset += n

    def _record(self, batch: list[_Item], size: int, start: int, end: int, ok: bool) -> None:
        s = self.stats
        compute = end - start
        s.execution_count += 1
        s.inference_count += size
        s.compute_ns += compute
        s.last_inference_ms = int(time.time() * 1000)
        count_ns = s.batches.setdefault(size, [0, 0])
        count_ns[0] += 1
        count_ns[1] += compute
        for it in batch:
            queued = start - it.queued_ns
            s.queue_ns += queued
            if ok:
                s.success_count += 1
                s.success_ns += end - it.queued_ns
            else:
                s.fail_count += 1
                s.fail_ns += end - it.queued_ns
            self._metrics.queue_seconds.observe(queued / 1e9, model=self.name)
        self._metrics.batch_size.observe(size, model=self.name)
        self._metrics.inference_seconds.observe(compute / 1e9, model=self.name)


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


__all__ = ["BatchConfig", "ModelStats", "QueueFullError", "ServedModel", "ShuttingDownError"]
