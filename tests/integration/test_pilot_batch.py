"""The drone pilot as a real Grid Engine and SLURM job, in dask mode without an image.

The site adapter submits the installed pilot exactly as the daemon would, and stops it as
the daemon would: on Grid Engine ``qdel`` of a ``-notify`` job (SIGUSR2, SIGKILL 5 s later),
on SLURM ``scancel --batch --signal=USR2`` (a kill follows after StopGrace). A real
``distributed`` scheduler runs in the test, together with one in-process "keeper" worker
that can take over data. The jobs run on this host.

What a user would notice, and what is asserted:
* the drone's worker joins under the drone uuid and computes;
* stopping the drone *retires* the worker: data held only by it - a computed result and
  scattered data, which cannot be recomputed - is still gatherable afterwards, and the
  scheduler recorded a retirement, not a lost worker;
* the pilot logged the drain and removed its scratch directory.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import sys
import uuid
from pathlib import Path

import pytest
from distributed import Client, Scheduler, Worker
from tardis.interfaces.siteadapter import ResourceStatus

from tardis_sge_dask.pilot import pilot_path
from tardis_sge_dask.sites.sge import SGEAdapter
from tardis_sge_dask.sites.slurm import SlurmBatchAdapter
from tests.helpers.standins import status_until, wait_for
from tests.helpers.tardis_config import drone as drone_attributes
from tests.helpers.tardis_config import make_adapter, site_section

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


BATCH_SYSTEMS = {
    # h_vmem is a hard address-space limit a Python worker would hit: not requested here
    "sge": (SGEAdapter, "SGE", {"Queue": "all.q", "MemoryResource": None}),
    "slurm": (SlurmBatchAdapter, "SlurmBatch", {"Partition": "debug", "StopGrace": 60}),
}


def pilot_adapter(system: str, scheduler_address: str, log_directory: Path):
    adapter_class, name, machine_type = BATCH_SYSTEMS[system]
    section = site_section(
        str(pilot_path()),
        Walltime=3600,
        LogDirectory=str(log_directory),
        JobEnvironment={
            "PILOT_LIFETIME_MARGIN": "120",
            "PILOT_MODE": "dask",
            "PILOT_CONTAINER": "none",
            "PILOT_DASK_SCHEDULER": scheduler_address,
            "PILOT_PYTHON": sys.executable,
        },
        **machine_type,
    )
    section["MachineMetaData"]["small"] = {"Cores": 1, "Memory": 1, "Disk": 1}
    section["accounting_grace"] = 10
    return make_adapter(adapter_class, name, section, site=f"pilot{system}")


def job_output(log_directory: Path, stream: str) -> str:
    """The job's stdout/stderr file, whichever way the batch system names it."""
    patterns = {"out": ("*.o[0-9]*", "*.out"), "err": ("*.e[0-9]*", "*.err")}[stream]
    files = [path for pattern in patterns for path in log_directory.glob(pattern)]
    assert len(files) == 1, files
    return files[0].read_text()


@pytest.mark.parametrize("system", sorted(BATCH_SYSTEMS))
async def test_pilot_joins_computes_and_retires_when_the_drone_stops(system, request, tmp_path):
    request.getfixturevalue(system)  # the real batch system, or a failure under CI=true
    drone_uuid = f"pilot{system}-{uuid.uuid4().hex[:10]}"
    logs = RecordLogs()
    scheduler_logger = logging.getLogger("distributed.scheduler")
    scheduler_logger.addHandler(logs)
    scheduler_logger.setLevel(logging.INFO)
    job_id = adapter = attributes = None
    try:
        async with (
            Scheduler(host="127.0.0.1", port=0, dashboard=False) as scheduler,
            Worker(scheduler.address, name="keeper", nthreads=1) as keeper,
            Client(scheduler.address, asynchronous=True) as client,
        ):
            adapter = pilot_adapter(system, scheduler.address, tmp_path)
            attributes = drone_attributes(drone_uuid)
            attributes.update(await adapter.deploy_resource(attributes))
            job_id = attributes.remote_resource_uuid

            def drone_worker():
                for address, ws in scheduler.workers.items():
                    if ws.name == drone_uuid:
                        return address
                return None

            await wait_for(
                lambda: drone_worker() is not None, START_WITHIN, "the drone's worker to register"
            )
            drone = drone_worker()
            info = scheduler.workers[drone]
            assert info.nthreads == 1
            assert info.memory_limit == 1024 * 2**20  # Memory: 1 GB of the machine type

            # A stdlib function: the worker cannot import this test module.
            computed = client.submit(
                operator.mul,
                21,
                2,
                workers=[drone_uuid],
                allow_other_workers=False,
                key="held-by-drone",
            )
            assert await asyncio.wait_for(computed, LEAVE_WITHIN) == 42
            [scattered] = await client.scatter([list(range(1000))], workers=[drone])
            who_has = await client.who_has([computed, scattered])
            assert set(who_has.values()) == {(drone,)}

            await adapter.stop_resource(attributes)
            await wait_for(
                lambda: drone_worker() is None, LEAVE_WITHIN, "the drone's worker to leave"
            )

            assert await asyncio.wait_for(client.gather(computed), LEAVE_WITHIN) == 42
            assert await asyncio.wait_for(client.gather(scattered), LEAVE_WITHIN) == list(
                range(1000)
            )
            who_has = await client.who_has([computed, scattered])
            assert set(who_has.values()) == {(keeper.address,)}
            assert any("Retire worker names" in m and drone_uuid in m for m in logs.messages)
            assert any(m.startswith("Retired worker") and drone in m for m in logs.messages)

        await status_until(adapter, attributes, ResourceStatus.Deleted, LEAVE_WITHIN)
        job_id = None
        stdout = job_output(tmp_path, "out")
        assert "received SIGUSR2: draining the dask payload" in stdout
        assert "payload left after the drain" in stdout
        # The worker logs to stderr; the pilot writes there only to fail.
        assert "drone-pilot: error" not in job_output(tmp_path, "err")
        scratch = next(
            line.split("scratch directory ", 1)[1]
            for line in stdout.splitlines()
            if "scratch directory" in line
        )
        assert not Path(scratch).exists()
    finally:
        scheduler_logger.removeHandler(logs)
        if job_id is not None:
            await adapter.terminate_resource(attributes)
