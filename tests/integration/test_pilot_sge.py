"""The drone pilot as a real Grid Engine job, in dask mode without an image.

The job script is what the SGE adapter submits: ``render_job_script`` of the installed
pilot, piped to ``qsub -terse -notify -S /bin/bash`` with the ``TardisDrone*`` variables
passed by ``-v``. A real ``distributed`` scheduler runs in the test, together with one
in-process "keeper" worker that can take over data. The job runs on this host.

What a user would notice, and what is asserted:
* the drone's worker joins under the drone uuid and computes;
* ``qdel`` (SIGUSR2 from ``-notify``, SIGKILL 5 s later) *retires* the worker: data held
  only by it - a computed result and scattered data, which cannot be recomputed - is
  still gatherable afterwards, and the scheduler recorded a retirement, not a lost worker;
* the pilot logged the drain and removed its scratch directory.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from distributed import Client, Scheduler, Worker

from tardis_sge_dask.pilot import pilot_path
from tardis_sge_dask.sites.jobscript import render_job_script

pytestmark = pytest.mark.integration

# Generous bounds for waiting on Grid Engine (15 s scheduling interval here); they only
# turn a hang into a failure, nothing is asserted about durations.
START_WITHIN = 180
LEAVE_WITHIN = 60


class RecordLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def wait_for(condition, within: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        await asyncio.sleep(0.5)


def in_qstat(job_id: str) -> bool:
    out = subprocess.run(["qstat"], capture_output=True, text=True).stdout
    return any(line.split()[:1] == [job_id] for line in out.splitlines())


async def test_pilot_joins_computes_and_retires_on_qdel(sge, tmp_path):
    drone_uuid = f"pilot-sge-{uuid.uuid4().hex[:8]}"
    logs = RecordLogs()
    scheduler_logger = logging.getLogger("distributed.scheduler")
    scheduler_logger.addHandler(logs)
    scheduler_logger.setLevel(logging.INFO)
    job_id = None
    try:
        async with (
            Scheduler(host="127.0.0.1", port=0, dashboard=False) as scheduler,
            Worker(scheduler.address, name="keeper", nthreads=1) as keeper,
            Client(scheduler.address, asynchronous=True) as client,
        ):
            script = render_job_script(
                pilot_path(),
                {
                    "PILOT_BATCH_SYSTEM": "sge",
                    "PILOT_SITE": "test",
                    "PILOT_MACHINE_TYPE": "one-core",
                    "PILOT_WALLTIME": "3600",
                    "PILOT_LIFETIME_MARGIN": "120",
                    "PILOT_MODE": "dask",
                    "PILOT_CONTAINER": "none",
                    "PILOT_DASK_SCHEDULER": scheduler.address,
                    "PILOT_PYTHON": sys.executable,
                },
            )
            drone_vars = {
                "TardisDroneCores": "1",
                "TardisDroneMemory": "1000",
                "TardisDroneDisk": "100000",
                "TardisDroneUuid": drone_uuid,
            }
            submitted = subprocess.run(
                ["qsub", "-terse", "-notify", "-S", "/bin/bash", "-N", drone_uuid,
                 "-o", str(tmp_path / "pilot.out"), "-e", str(tmp_path / "pilot.err"),
                 "-v", ",".join(f"{k}={v}" for k, v in drone_vars.items())],
                input=script, capture_output=True, text=True, check=True,
            )
            job_id = submitted.stdout.strip()
            assert job_id.isdigit(), submitted.stdout

            def drone_worker():
                for address, ws in scheduler.workers.items():
                    if ws.name == drone_uuid:
                        return address
                return None

            await wait_for(lambda: drone_worker() is not None, START_WITHIN,
                           "the drone's worker to register")
            drone = drone_worker()
            info = scheduler.workers[drone]
            assert info.nthreads == 1
            assert info.memory_limit == 1000 * 2**20

            # A stdlib function: the worker cannot import this test module.
            computed = client.submit(operator.mul, 21, 2, workers=[drone_uuid],
                                     allow_other_workers=False, key="held-by-drone")
            assert await asyncio.wait_for(computed, LEAVE_WITHIN) == 42
            [scattered] = await client.scatter([list(range(1000))], workers=[drone])
            who_has = await client.who_has([computed, scattered])
            assert set(who_has.values()) == {(drone,)}

            subprocess.run(["qdel", job_id], capture_output=True, check=True)
            await wait_for(lambda: drone_worker() is None, LEAVE_WITHIN,
                           "the drone's worker to leave")

            assert await asyncio.wait_for(client.gather(computed), LEAVE_WITHIN) == 42
            assert await asyncio.wait_for(client.gather(scattered), LEAVE_WITHIN) == list(
                range(1000)
            )
            who_has = await client.who_has([computed, scattered])
            assert set(who_has.values()) == {(keeper.address,)}
            assert any("Retire worker names" in m and drone_uuid in m for m in logs.messages)
            assert any(m.startswith("Retired worker") and drone in m for m in logs.messages)

        await wait_for(lambda: not in_qstat(job_id), LEAVE_WITHIN, "the job to leave qstat")
        job_id = None
        stdout = (tmp_path / "pilot.out").read_text()
        assert "received SIGUSR2: draining the dask payload" in stdout
        assert "payload left after the drain" in stdout
        # The worker logs to stderr; the pilot writes there only to fail.
        assert "drone-pilot: error" not in (tmp_path / "pilot.err").read_text()
        scratch = next(
            line.split("scratch directory ", 1)[1]
            for line in stdout.splitlines() if "scratch directory" in line
        )
        assert not Path(scratch).exists()
    finally:
        scheduler_logger.removeHandler(logs)
        if job_id is not None and in_qstat(job_id):
            subprocess.run(["qdel", job_id], capture_output=True)
