"""Run the real ``python -m cobald.daemon`` on a generated unified configuration."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

PILOT = Path(__file__).parent.parent / "integration" / "data" / "sleep-pilot.sh"


def unique_site(prefix: str) -> str:
    """A site name unique to this test, so its drone (= job) names are too."""
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def one_core_site(
    job_environment: dict[str, Any], logs: Path, machine_type: dict[str, Any]
) -> dict[str, Any]:
    """A site section with one machine type of 1-core drones running the real pilot."""
    from tardis_sge_dask.pilot import pilot_path

    return {
        "accounting_grace": 10,
        "JobEnvironment": job_environment,
        "MachineTypes": ["onecore"],
        "MachineMetaData": {"onecore": {"Cores": 1, "Memory": 2, "Disk": 1}},
        "MachineTypeConfiguration": {
            "onecore": {
                "StartupCommand": str(pilot_path()),
                "LogDirectory": str(logs),
                **machine_type,
            }
        },
    }


def unified_config(
    directory: Path,
    *,
    site: str,
    adapter: str,
    site_section: dict[str, Any],
    quota: int = 8,
    interval: float = 2,
    heartbeat: int = 2,
    batch_system: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write a unified cobald/tardis YAML; returns (config path, demand file)."""
    demand = directory / "demand"
    demand.write_text("0")
    config = {
        "pipeline": [
            "__STATIC_DEMAND__",
            {
                "__type__": "tardis_sge_dask.poolfactory.create_composite_pool",
                "interval": interval,
            },
        ],
        "logging": {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
            "handlers": {
                "console": {
                    "class": "logging.StreamHandler",
                    "stream": "ext://sys.stdout",
                    "formatter": "plain",
                }
            },
            "root": {"level": "INFO", "handlers": ["console"]},
        },
        "tardis": {
            "Plugins": {"SqliteRegistry": {"db_file": str(directory / "drones.db")}},
            "BatchSystem": batch_system
            or {
                "adapter": "FakeBatchSystem",
                "allocation": 1.0,
                "utilisation": 1.0,
                "machine_status": "Available",
            },
            "Sites": [
                {
                    "name": site,
                    "adapter": adapter,
                    "quota": quota,
                    "drone_heartbeat_interval": heartbeat,
                }
            ],
            site: {"executor": "__SHELL_EXECUTOR__", **site_section},
        },
    }
    text = yaml.safe_dump(config, sort_keys=False)
    text = text.replace("- __STATIC_DEMAND__", f"- !StaticDemand {{file: {demand}, interval: 1}}")
    text = text.replace("__SHELL_EXECUTOR__", "!TardisShellExecutor {}")
    path = directory / "cobald.yaml"
    path.write_text(text)
    return path, demand


class CobaldDaemon:
    """``python -m cobald.daemon CONFIG`` as a child process with its log in a file."""

    def __init__(self, config: Path):
        self.config = config
        self.log_path = config.with_suffix(".log")
        self.process: subprocess.Popen | None = None

    def start(self) -> CobaldDaemon:
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cobald.daemon", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.config.parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as after a crash or an OOM kill."""
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_until(
    condition: Callable[[], Any], timeout: float, what: str, daemon: CobaldDaemon | None = None
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with context otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        if daemon is not None and not daemon.alive:
            raise AssertionError(f"daemon died while waiting for {what}:\n{daemon.log()[-4000:]}")
        time.sleep(1)
    tail = f"\n--- daemon log ---\n{daemon.log()[-4000:]}" if daemon else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{tail}")
