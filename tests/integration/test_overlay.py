"""The physicist's path through the HTCondor overlay, end to end, on Grid Engine and SLURM.

Real: the overlay central manager (HTCondor 23.9 collector, negotiator and schedd of
services/htcondor-up.sh), Grid Engine, SLURM, the test sshd, the COBalD daemon with
``!DaskDemandController`` / ``!CondorQueueDemand`` and TARDIS's HTCondor batch-system
adapter, dask-jobqueue through ``OverlayCluster``, Dask, and the drone image of
containers/test-image with its HTCondor startd.
The one stand-in: Apptainer, which neither Debian release packages; the pilot finds
containers/test-image/apptainer (bubblewrap over the directory image) first on its PATH.

The story a physicist and an admin would see, asserted step by step:

1. ``OverlayCluster.scale(N)`` puts N idle worker jobs into the overlay schedd;
2. the controller reads them with condor_q and asks for drones, which are submitted to
   the batch system as the pilot account;
3. each pilot starts the image, its startd joins the pool with the drone token;
4. the negotiator matches the worker jobs, the workers connect to the user's scheduler
   over TLS, and a ``dask.array`` sum is right (computed by workers of the client's
   Python minor version);
5. ``cluster.close()`` removes the jobs; after ``idle_time`` TARDIS drains the drones with
   the real ``condor_drain``, the startds and masters leave, the batch jobs end;
6. nothing is left: no drone in the batch system, no job in the schedd, no startd in
   the collector, no process of the pilot account.

Waits are bounded only to turn a hang into a failure; durations are not asserted
(bench/bench_overlay.py measures them).
"""

from __future__ import annotations

import sys

import pytest

from tests.conftest import service_missing
from tests.helpers import overlay
from tests.helpers.daemon import CobaldDaemon, unique_site, wait_until
from tests.integration.test_end_to_end_sge import SGE, Backend
from tests.integration.test_end_to_end_slurm import SLURM

pytestmark = pytest.mark.integration

WORKERS = 2
IDLE_TIME = 10


@pytest.fixture(scope="session")
def overlay_pool() -> None:
    """The overlay central manager answers and the drone token exists."""
    if not overlay.pool_answers():
        service_missing("the overlay HTCondor pool does not answer condor_status")
    if not overlay.DRONE_TOKEN.exists():
        service_missing(f"no drone token at {overlay.DRONE_TOKEN}")


@pytest.fixture(scope="session")
def overlay_image() -> None:
    """The drone test image and the Apptainer stand-in (make image)."""
    if not (overlay.IMAGE / "usr" / "sbin" / "condor_master").exists():
        service_missing(f"no drone test image at {overlay.IMAGE}")
    if not (overlay.STANDIN_BIN / "apptainer").exists():
        service_missing(f"no Apptainer stand-in in {overlay.STANDIN_BIN}")


def test_physicist_path_on_grid_engine(sge, sshd, overlay_pool, overlay_image, tmp_path):
    run_overlay(tmp_path, SGE, unique_site("ovsge"), sshd)


def test_physicist_path_on_slurm(slurm, sshd, overlay_pool, overlay_image, tmp_path):
    run_overlay(tmp_path, SLURM, unique_site("ovslurm"), sshd)


def run_overlay(tmp_path, backend: Backend, site: str, sshd: dict) -> None:
    logs = overlay.owned_directory(f"tsd-{site}-logs-", overlay.PILOT_USER, 0o755)
    config = overlay.overlay_config(
        tmp_path, site=site, adapter=backend.adapter, machine_type=backend.machine_type,
        ssh=sshd, known_hosts=overlay.pinned_known_hosts(tmp_path), logs=logs,
        drones=WORKERS, idle_time=IDLE_TIME,
    )
    # the physicist's jobs of an interrupted earlier run would be demand for this one
    overlay.remove_jobs()
    wait_until(lambda: not overlay.schedd_jobs(), 60, "an empty overlay schedd")
    daemon = CobaldDaemon(config).start()
    session = None
    try:
        # no waiting worker, no drone
        wait_until(lambda: "demand" in daemon.log().lower() or not daemon.alive, 30,
                   "the controller's first reading", daemon)
        assert not backend.jobs(site), "drones were submitted without any work"

        session = overlay.PhysicistSession(WORKERS)
        session.wait_for("scaled", 120)
        # 1. N idle worker jobs in the real schedd, marked for the controller
        jobs = wait_until(lambda: len(overlay.schedd_jobs()) == WORKERS and overlay.schedd_jobs(),
                          60, f"{WORKERS} worker jobs in the overlay schedd", daemon)
        assert {job["status"] for job in jobs} <= {1, 2}
        marked = overlay.condor("condor_q", overlay.SUBMIT_USER, "-af", "IsDaskWorker")
        assert marked.split() == ["true"] * WORKERS
        # 2. the controller asks for drones; they go to the batch system as the pilot account
        drones = wait_until(lambda: backend.jobs(site), 120, "drones in the batch system",
                            daemon)
        assert len(drones) <= WORKERS
        # 3./4. the startds join, the workers connect and compute
        joined = session.wait_for("workers", 600)
        result = session.wait_for("result", 300)
        n = 1_000_000
        assert result["total"] == n * (n - 1)
        assert result["worker_pythons"] == [list(sys.version_info[:2])]
        drone_names = {job["name"] for job in backend.jobs(site).values()}
        running = overlay.schedd_jobs()
        assert [job["status"] for job in running] == [2] * WORKERS
        # every worker job runs on the startd of one of this site's drones, which is a
        # batch job right now
        assert all(any(f"@{name}@" in job["host"] for name in drone_names) for job in running), (
            running, drone_names)
        assert len(joined["names"]) == WORKERS

        # 5. the physicist is done
        session.finish()
        wait_until(lambda: not overlay.schedd_jobs(), 120,
                   "the worker jobs to leave the schedd", daemon)
        wait_until(lambda: not backend.jobs(site), IDLE_TIME + 300,
                   "the drones to leave the batch system", daemon)
        wait_until(lambda: not (set(overlay.drone_startds()) & drone_names), 120,
                   "the drone startds to leave the collector", daemon)
        # TARDIS drained them through HTCondor before the batch jobs were removed
        log = daemon.log()
        for name in drone_names:
            assert f"{name}" in log
        assert "DrainingState" in log or "Draining" in log, log[-4000:]
        # 6. nothing of the drones is left on the node
        wait_until(lambda: not overlay.account_processes(
            overlay.PILOT_USER, "condor_master", "condor_startd", "condor_starter", "bwrap"),
            60, "the pilot account's drone processes to end", daemon)
        for pilot_log in logs.glob("*"):
            assert "drone-pilot: error" not in pilot_log.read_text(), pilot_log.read_text()
        assert daemon.alive, daemon.log()[-4000:]
        assert "Traceback" not in daemon.log(), daemon.log()[-4000:]
    finally:
        if session is not None:
            session.kill()
        daemon.stop()
        backend.cleanup(site)
        overlay.remove_jobs()
