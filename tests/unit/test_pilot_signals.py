"""The pilot's warning signals, on this host without a batch system.

Grid Engine's ``-notify`` sends SIGUSR2 (before ``qdel``'s kill) or SIGUSR1 (before a
suspend) to the job's whole *process group*; the pilot is started here in its own
session and the signal is sent to that group exactly so. SLURM's ``--signal=B:...`` and
``scancel -b`` reach the batch shell only: SIGTERM to the pilot process. In every case
the drone's Dask worker must be *retired* - data only it holds moves to another worker -
and the pilot must exit 0 with its scratch removed. tests/integration/test_pilot_batch.py
does the same through a real ``qdel`` and ``scancel``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid

import pytest
from distributed import Client, Scheduler, Worker

from tardis_sge_dask.pilot import pilot_path
from tests.helpers.standins import wait_for

JOIN_WITHIN = 60


@pytest.mark.parametrize(
    ("signum", "whole_group"),
    [(signal.SIGUSR2, True), (signal.SIGUSR1, True), (signal.SIGTERM, False)],
    ids=["sge-qdel-notify", "sge-suspend-notify", "slurm-batch-signal"],
)
async def test_warning_signal_retires_the_worker(tmp_path, signum, whole_group):
    drone_uuid = f"signal-{uuid.uuid4().hex[:8]}"
    scratch_base = tmp_path / "scratch"
    scratch_base.mkdir()
    async with (
        Scheduler(host="127.0.0.1", port=0, dashboard=False) as scheduler,
        Worker(scheduler.address, name="keeper", nthreads=1) as keeper,
        Client(scheduler.address, asynchronous=True) as client,
    ):
        env = {
            "PATH": os.environ["PATH"],
            "TardisDroneCores": "1",
            "TardisDroneMemory": "1000",
            "TardisDroneDisk": "1000",
            "TardisDroneUuid": drone_uuid,
            "PILOT_BATCH_SYSTEM": "local",
            "PILOT_DASK_SCHEDULER": scheduler.address,
            "PILOT_PYTHON": sys.executable,
            "PILOT_SCRATCH_BASE": str(scratch_base),
        }
        pilot = subprocess.Popen(
            ["bash", str(pilot_path())],
            env=env,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:

            def drone_worker():
                return next(
                    (a for a, ws in scheduler.workers.items() if ws.name == drone_uuid), None
                )

            await wait_for(lambda: drone_worker() is not None, JOIN_WITHIN, "worker to join")
            drone = drone_worker()
            [data] = await client.scatter([list(range(100))], workers=[drone])
            assert await client.who_has([data]) == {data.key: (drone,)}

            if whole_group:
                os.killpg(pilot.pid, signum)
            else:
                pilot.send_signal(signum)
            status = await asyncio.to_thread(pilot.wait, JOIN_WITHIN)

            assert status == 0
            assert drone_worker() is None
            assert await asyncio.wait_for(client.gather(data), JOIN_WITHIN) == list(range(100))
            assert await client.who_has([data]) == {data.key: (keeper.address,)}
            stdout = pilot.stdout.read()
            assert f"received SIG{signal.Signals(signum).name[3:]}: draining" in stdout
            assert "payload left after the drain" in stdout
            assert list(scratch_base.iterdir()) == []
        finally:
            if pilot.poll() is None:
                os.killpg(pilot.pid, signal.SIGKILL)
                pilot.wait()
