"""Direct mode end to end on the real Grid Engine, with only real parts.

A Dask scheduler (a child process of the test, on 127.0.0.1: the execution host is this
host) gets work from a user's ``Client``. The real ``python -m cobald.daemon`` runs the
package's unified configuration: ``!DaskDemandController`` reading ``!DaskSchedulerDemand``
above the package's pool factory, ``adapter: SGE`` drones of one core whose job script is
the drone pilot in dask mode (no image) and ``BatchSystem: adapter: Dask``.

What a user and an admin would notice, and what is asserted:

* queued work makes drones appear as Grid Engine jobs named after the drones, and their
  workers join the scheduler under the drone uuids;
* the computation gives the right result, every task ran exactly once, on drone workers;
* when the work is done the drones are retired through the scheduler (not killed), their
  jobs leave ``qstat`` and each pilot ended without an error;
* the daemon stays up and logs no traceback throughout.

Every wait is bounded only to turn a hang into a failure (Grid Engine schedules every 15 s
here); nothing is asserted about durations.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from distributed import Client

from tests.helpers import sge as qstat
from tests.helpers.daemon import (
    CobaldDaemon,
    one_core_site,
    unified_config,
    unique_site,
    wait_until,
)

pytestmark = pytest.mark.integration

DRONES = 3  # 1-core drones; the machine has 2 cores, Grid Engine 16 slots
TASKS = 18
TASK_SECONDS = 2.0
IDLE_TIME = 10  # seconds an idle drone is kept before the controller lets it go


@dataclass(frozen=True)
class Backend:
    """What differs between batch systems in this test; the rest is the same run."""

    adapter: str
    #: the machine type's configuration besides StartupCommand and LogDirectory
    machine_type: dict[str, Any]
    #: job id -> {name, state} of the jobs still in the batch system, by name prefix
    jobs: Callable[[str], dict[str, dict[str, str]]]
    #: removes every job of a name prefix (cleanup)
    cleanup: Callable[[str], None]
    #: glob patterns of a drone's stdout / stderr file in LogDirectory
    out_log: str
    err_log: str


SGE = Backend(
    adapter="SGE",
    machine_type={
        "Queue": "all.q",
        "Walltime": 3600,
        # h_vmem is a hard address-space limit; a Python worker maps far more than it
        # uses, so memory is left to Dask's own limit here
        "MemoryResource": None,
    },
    jobs=qstat.jobs,
    cleanup=qstat.delete,
    out_log="{name}.o*",
    err_log="{name}.e*",
)


class SchedulerProcess:
    """``dask scheduler`` as a child process; its log tells how workers left."""

    def __init__(self, directory: Path):
        self.file = directory / "scheduler.json"
        self.log_path = directory / "scheduler.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> str:
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(self.file),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(
            lambda: self.file.exists() and self.file.stat().st_size,
            60,
            "the Dask scheduler to write its address",
        )
        return json.loads(self.file.read_text())["address"]

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def direct_mode_config(
    directory: Path, site: str, scheduler: str, logs: Path, backend: Backend
) -> Path:
    """The unified config an admin would write for direct mode, scaled down to this host."""
    path, _ = unified_config(
        directory,
        site=site,
        adapter=backend.adapter,
        quota=DRONES,
        interval=2,
        heartbeat=2,
        batch_system={"adapter": "Dask", "scheduler_address": scheduler, "max_age": 0.05},
        site_section=one_core_site(
            {
                "PILOT_MODE": "dask",
                "PILOT_CONTAINER": "none",
                "PILOT_PYTHON": sys.executable,
                "PILOT_DASK_SCHEDULER": scheduler,
                "PILOT_RETIRE_TIMEOUT": 20,
            },
            logs,
            backend.machine_type,
        ),
    )
    controller = {
        "interval": 2,
        "idle_time": IDLE_TIME,
        "maximum": DRONES,
        "source": "__SOURCE__",
    }
    source = f"!DaskSchedulerDemand {{address: '{scheduler}', target_duration: 1s}}"
    text = path.read_text()
    text, replaced = re.subn(
        r"- !StaticDemand \{[^}]*\}",
        "- !DaskDemandController "
        + yaml.safe_dump(controller, default_flow_style=True).strip().replace("__SOURCE__", source),
        text,
    )
    assert replaced == 1, text
    path.write_text(text)
    return path


def test_dask_work_scales_sge_drones_up_and_down(sge, tmp_path):
    run_end_to_end(tmp_path, SGE, unique_site("e2esge"))


def run_end_to_end(tmp_path: Path, backend: Backend, site: str) -> None:
    """Work in, drones up, right result, work gone, drones retired and gone."""
    logs = tmp_path / "logs"
    logs.mkdir()
    record = tmp_path / "executions"
    scheduler = SchedulerProcess(tmp_path)
    daemon = None
    try:
        address = scheduler.start()
        daemon = CobaldDaemon(direct_mode_config(tmp_path, site, address, logs, backend)).start()

        def run_task(index: int) -> int:
            # defined here so that cloudpickle ships it by value to the drone's worker
            from distributed import get_worker

            time.sleep(TASK_SECONDS)
            with open(record, "a") as out:
                out.write(f"{index} {get_worker().name}\n")
            return index * index

        with Client(address, set_as_default=False) as client:
            # nothing is queued yet: no drone may appear
            time.sleep(6)
            assert not backend.jobs(site), "drones were submitted without any work"

            futures = client.map(run_task, range(TASKS), pure=False)
            wait_until(
                lambda: len(backend.jobs(site)) >= DRONES,
                120,
                f"{DRONES} drones queued at the batch system",
                daemon,
            )
            wait_until(
                lambda: sum(name.startswith(site) for name in worker_names(client)) >= 1,
                300,
                "a drone's worker to join the scheduler",
                daemon,
            )
            results = client.gather(futures)
            assert results == [index * index for index in range(TASKS)]

            drone_workers = {name for name in worker_names(client) if name.startswith(site)}
            job_names = {job["name"] for job in backend.jobs(site).values()}
            # a worker is the drone of the batch job of the same name
            assert drone_workers and drone_workers <= job_names
            assert len(job_names) <= DRONES

            executions = [line.split() for line in record.read_text().splitlines()]
            assert sorted(int(index) for index, _ in executions) == list(range(TASKS))
            assert {worker for _, worker in executions} <= job_names

            # the user is done: drop the results, the scheduler wants no workers
            del futures, results
            wait_until(
                lambda: not backend.jobs(site),
                IDLE_TIME + 240,
                "the drones to leave the batch system",
                daemon,
            )
            assert not [name for name in worker_names(client) if name.startswith(site)]

        scheduler_log = scheduler.log()
        for name in drone_workers:
            # drained: retired through the scheduler, not lost with a killed job
            assert re.search(rf"Retire worker names.*{name}", scheduler_log), scheduler_log
            removals = re.findall(rf"Remove worker addr: \S+ name: {name} \((.*)\)", scheduler_log)
            assert removals and all("retire-workers" in why for why in removals), removals
        # every pilot saw its worker leave and ended cleanly (the .e files hold the
        # worker's own log; a pilot failure would be a "drone-pilot: error:" line there)
        for name in job_names:
            [pilot_log] = logs.glob(backend.out_log.format(name=name))
            ended = pilot_log.read_text()
            assert "payload finished" in ended or "payload left after the drain" in ended, ended
            [error_log] = logs.glob(backend.err_log.format(name=name))
            assert "drone-pilot: error" not in error_log.read_text()
        assert daemon.alive, daemon.log()[-4000:]
        assert "Traceback" not in daemon.log(), daemon.log()[-4000:]
    finally:
        if daemon is not None:
            daemon.stop()
        backend.cleanup(site)
        scheduler.stop()


def worker_names(client: Client) -> list[str]:
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return [str(info.get("name")) for info in workers.values()]
