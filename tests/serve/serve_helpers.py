"""Start real `cnnedge serve` processes on free 127.0.0.1 ports (used by the serve tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Runs the real CLI; after start-up (model loaded, socket bound) it writes sorted(sys.modules) to
# the file named by argv[1], so a test can see exactly what the serving process imported.
LAUNCHER = """
import sys
from cnnedge.serve import server as _server
_modules_file = sys.argv[1]
_announce = _server._announce
def _announce_and_record(*args, **kwargs):
    _announce(*args, **kwargs)
    with open(_modules_file, "w") as fh:
        fh.write("\\n".join(sorted(sys.modules)))
_server._announce = _announce_and_record
from cnnedge.cli import main
sys.argv = ["cnnedge", *sys.argv[2:]]
main()
"""


@dataclass
class Server:
    """A running server process."""

    proc: subprocess.Popen[str]
    url: str  # http://127.0.0.1:PORT
    modules_file: Path
    log_file: Path

    @property
    def hostport(self) -> str:
        return self.url.removeprefix("http://")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM the server and return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"server did not exit {timeout}s after SIGTERM") from None

    def log(self) -> str:
        return self.log_file.read_text()


def start_server(
    package: Path, tmp: Path, *args: str, timeout: float = 60.0, env: dict[str, str] | None = None
) -> Server:
    """Start `cnnedge serve PACKAGE --port 0 ARGS` and wait for its "listening on" line.

    Args:
        package: the model package folder.
        tmp: a folder for the modules and log files.
        args: extra CLI arguments.
        timeout: seconds to wait for start-up.
        env: extra environment variables for the server.

    Returns:
        The running server.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    modules = tmp / "modules.txt"
    log = tmp / "server.log"
    full_env = {k: v for k, v in os.environ.items() if k != "CNNEDGE_API_KEY"}
    full_env.update({"PYTHONUNBUFFERED": "1", **(env or {})})
    cmd = [sys.executable, "-c", LAUNCHER, str(modules), "serve", str(package), "--port", "0"]
    proc = subprocess.Popen(
        [*cmd, *args],
        stdout=subprocess.PIPE,
        stderr=open(log, "w"),  # noqa: SIM115 - the child owns it
        text=True,
        env=full_env,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("listening on "):
            url = line.split()[2]
            return Server(proc, url, modules, log)
    proc.kill()
    proc.wait()
    raise AssertionError(f"server did not start: stdout {lines!r}, stderr {log.read_text()!r}")
