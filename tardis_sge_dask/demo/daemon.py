"""The demo's COBalD/TARDIS daemon: a real ``python -m cobald.daemon`` child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


class Daemon:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.log = workdir / "daemon.log"
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self, config: Path) -> None:
        log = open(self.log, "ab")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cobald.daemon", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                # a Ctrl-C on the terminal is for the demo, which stops the daemon in order
                start_new_session=True,
            )
        finally:
            log.close()

    def died(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def tail(self, lines: int = 15) -> str:
        """The end of the daemon's log, for a human reading why it failed."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> list[str]:
        """SIGTERM, then SIGKILL after 30 s; the problems met on the way."""
        if self.process is None or self.process.poll() is not None:
            return []
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            return ["the daemon ignored SIGTERM for 30 s; killed"]
        return []
