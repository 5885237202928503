"""Direct mode over two real sites in one daemon: a Dask computation, some of it pinned.

One ``python -m cobald.daemon`` drives the local Grid Engine (preferred, quota 1 core) and
SLURM (quota 2 cores); the drones run the real pilot in dask mode against one real
``dask scheduler``. The user maps tasks that may run anywhere and submits tasks with
``resources={"site:<SLURM site>": 1}``. Asserted: both sites get drones, every pinned task
ran on a SLURM drone's worker, every result is right, and the drones leave afterwards.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest
from distributed import Client

from tardis_sge_dask import configfile
from tests.helpers import sge as qstat
from tests.helpers import slurm as squeue
from tests.helpers.daemon import CobaldDaemon, unique_site, wait_until
from tests.integration.test_end_to_end_sge import (
    SGE,
    SchedulerProcess,
    direct_mode_config,
    worker_names,
)
from tests.integration.test_end_to_end_slurm import SLURM

pytestmark = pytest.mark.integration

IDLE_TIME = 10


def two_site_config(tmp_path: Path, preferred: str, other: str, address: str) -> Path:
    logs = tmp_path / "logs"
    logs.mkdir()
    config = direct_mode_config(tmp_path, preferred, address, logs, SGE)
    document = configfile.load(config)
    tardis = document["tardis"]
    tardis["Sites"][0]["quota"] = 1
    tardis["Sites"].append(
        {**tardis["Sites"][0], "name": other, "adapter": SLURM.adapter, "quota": 2}
    )
    section = copy.deepcopy(tardis[preferred])
    machine = section["MachineTypeConfiguration"]["onecore"]
    plain = {k: v for k, v in machine.items() if k in ("StartupCommand", "LogDirectory")}
    section["MachineTypeConfiguration"] = {"onecore": {**plain, **SLURM.machine_type}}
    tardis[other] = section
    controller = document["pipeline"][0]
    controller.value["maximum"] = 3
    controller.value["idle_time"] = IDLE_TIME
    config.write_text(configfile.dump(document))
    return config


def test_a_computation_over_both_sites_with_tasks_pinned_to_one(sge, slurm, tmp_path):
    preferred, pinned = unique_site("d2sge"), unique_site("d2slurm")
    record = tmp_path / "executions"
    scheduler = SchedulerProcess(tmp_path)
    daemon = None
    try:
        address = scheduler.start()
        daemon = CobaldDaemon(two_site_config(tmp_path, preferred, pinned, address)).start()

        def run_task(index: int) -> int:
            from distributed import get_worker

            time.sleep(2)
            with open(record, "a") as out:
                out.write(f"{index} {get_worker().name}\n")
            return index * index

        with Client(address, set_as_default=False) as client:
            anywhere = client.map(run_task, range(12), pure=False)
            kept = [
                client.submit(run_task, 100 + i, resources={f"site:{pinned}": 1}, pure=False)
                for i in range(4)
            ]
            everything = anywhere + kept
            seen_sge: set[str] = set()
            seen_slurm: set[str] = set()

            def both_sites_and_done() -> bool:
                jobs_sge = {job["name"] for job in qstat.jobs(preferred).values()}
                jobs_slurm = {job["name"] for job in squeue.alive(pinned).values()}
                assert len(jobs_sge) <= 1 and len(jobs_slurm) <= 2, (jobs_sge, jobs_slurm)
                seen_sge.update(jobs_sge)
                seen_slurm.update(jobs_slurm)
                return all(future.done() for future in everything)

            wait_until(both_sites_and_done, 300, "the computation over both sites", daemon)
            assert client.gather(anywhere) == [i * i for i in range(12)]
            assert client.gather(kept) == [(100 + i) ** 2 for i in range(4)]
            assert seen_sge and seen_slurm, (seen_sge, seen_slurm)
            executions = dict(line.split() for line in record.read_text().splitlines())
            # the pinned ones only on SLURM's drones; the others wherever there was room
            assert {executions[str(100 + i)] for i in range(4)} <= seen_slurm, executions
            assert set(executions.values()) <= seen_sge | seen_slurm

            # the user is done: with the results gone the scheduler wants no workers
            everything.clear()
            del anywhere, kept
            wait_until(
                lambda: not qstat.jobs(preferred) and not squeue.alive(pinned),
                IDLE_TIME + 240,
                "the drones of both sites to leave",
                daemon,
            )
            assert not [n for n in worker_names(client) if n.startswith((preferred, pinned))]
        assert daemon.alive, daemon.log()[-4000:]
        assert "Traceback" not in daemon.log(), daemon.log()[-4000:]
    finally:
        if daemon is not None:
            daemon.stop()
        qstat.delete(preferred)
        squeue.cancel(pinned)
        scheduler.stop()
