"""Server logging: one JSON line per request (access log) and plain server messages, on stderr.

Access lines are written in batches by a background thread, at most `interval` seconds after
the request, so the event loop never waits on a write and flush of stderr per request.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TextIO

ACCESS_LOGGER = "cnnedge.access"
SERVER_LOGGER = "cnnedge.serve"


class BatchedLineHandler(logging.Handler):
    """Collect formatted records and write them together every `interval` seconds."""

    def __init__(self, stream: TextIO, interval: float = 0.1) -> None:
        super().__init__()
        self._stream = stream
        self._interval = interval
        self._lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._lines.append(line)  # handle() holds self.lock around emit

    def flush(self) -> None:
        self.acquire()
        try:
            lines, self._lines = self._lines, []
        finally:
            self.release()
        if lines:
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()

    def close(self) -> None:
        self._stop.set()
        self.flush()
        super().close()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.flush()
            except (OSError, ValueError):  # stderr closed under us: nothing left to tell
                return


def configure_logging(level: int = logging.INFO) -> None:
    """Send access lines (batched) and server messages (immediately) to stderr."""
    access = logging.getLogger(ACCESS_LOGGER)
    server = logging.getLogger(SERVER_LOGGER)
    for logger in (access, server):
        for old in logger.handlers:
            old.close()
    batched = BatchedLineHandler(sys.stderr)
    plain = logging.StreamHandler(sys.stderr)
    for logger, handler in ((access, batched), (server, plain)):
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False


__all__ = ["ACCESS_LOGGER", "SERVER_LOGGER", "BatchedLineHandler", "configure_logging"]
