"""A physicist who names a site gets workers only there: one real daemon, two real sites.

``OverlayCluster(site=<the SLURM site>)`` while the daemon prefers Grid Engine (first in
``tardis.Sites``, room in its quota). Real: the overlay pool, the schedd's worker job with
its ``TardisSite``, ``!CondorQueueDemand`` reading it, the routing that keeps the job's drone
at SLURM, the drone's startd advertising ``TardisDroneSite``, the negotiator matching on it,
and Grid Engine, which gets no drone at any poll. A job naming no site would have brought a
Grid Engine drone (tests/integration/test_two_sites_daemon.py: the preferred site first).
"""

from __future__ import annotations

import copy
import sys
import time

import pytest

from tardis_sge_dask import configfile
from tests.helpers import overlay
from tests.helpers import sge as qstat
from tests.helpers import slurm as squeue
from tests.helpers.daemon import CobaldDaemon, unique_site, wait_until
from tests.integration.test_end_to_end_sge import SGE
from tests.integration.test_end_to_end_slurm import SLURM
from tests.integration.test_overlay import overlay_image, overlay_pool  # noqa: F401

pytestmark = pytest.mark.integration


def two_site_overlay_config(tmp_path, sshd, preferred: str, other: str, logs):
    """overlay_config's Grid Engine site, then a SLURM site of the same 1-core drones."""
    config = overlay.overlay_config(
        tmp_path, site=preferred, adapter=SGE.adapter, machine_type=SGE.machine_type,
        ssh=sshd, known_hosts=overlay.pinned_known_hosts(tmp_path), logs=logs,
        drones=2, idle_time=10,
    )  # fmt: skip
    document = configfile.load(config)
    tardis = document["tardis"]
    tardis["Sites"].append({**tardis["Sites"][0], "name": other, "adapter": SLURM.adapter})
    section = copy.deepcopy(tardis[preferred])
    machine = section["MachineTypeConfiguration"]["onecore"]
    plain = {k: v for k, v in machine.items() if k in ("StartupCommand", "LogDirectory")}
    section["MachineTypeConfiguration"] = {"onecore": {**plain, **SLURM.machine_type}}
    tardis[other] = section
    config.write_text(configfile.dump(document))
    return config


def test_a_job_pinned_to_a_site_runs_only_there(
    sge,
    slurm,
    sshd,
    overlay_pool,  # noqa: F811 - the imported fixture
    overlay_image,  # noqa: F811
    tmp_path,
):
    preferred, pinned = unique_site("pinsge"), unique_site("pinslurm")
    logs = overlay.owned_directory(f"tsd-{pinned}-logs-", overlay.PILOT_USER, 0o755)
    config = two_site_overlay_config(tmp_path, sshd, preferred, pinned, logs)
    overlay.remove_jobs()
    wait_until(lambda: not overlay.schedd_jobs(), 60, "an empty overlay schedd")
    daemon = CobaldDaemon(config).start()
    session = None
    try:
        wait_until(
            lambda: "demand" in daemon.log().lower() or not daemon.alive,
            30,
            "the controller's first reading",
            daemon,
        )
        session = overlay.PhysicistSession(1, pin_site=pinned)
        session.wait_for("scaled", 120)
        wait_until(
            lambda: len(overlay.schedd_jobs()) == 1, 60, "the worker job in the schedd", daemon
        )
        site_asked = overlay.condor("condor_q", overlay.SUBMIT_USER, "-af", "TardisSite")
        assert site_asked.split() == [pinned]
        # every second until the worker computed: a drone at SLURM, never one at Grid Engine
        deadline = time.monotonic() + 420
        result = None
        while result is None:
            assert not qstat.jobs(preferred), daemon.log()[-4000:]
            assert time.monotonic() < deadline, (
                f"no result; the session said {session.seen}\n{daemon.log()[-4000:]}"
            )
            assert daemon.alive, daemon.log()[-4000:]
            try:
                result = session.wait_for("result", 1)
            except AssertionError:
                if session.process.poll() is not None:
                    raise
        n = 1_000_000
        assert result["total"] == n * (n - 1)
        assert result["worker_pythons"] == [list(sys.version_info[:2])]
        drones = {job["name"] for job in squeue.alive(pinned).values()}
        [running] = overlay.schedd_jobs()
        assert running["status"] == 2 and any(f"@{d}@" in running["host"] for d in drones)
        advertised = overlay.condor(
            "condor_status", "-constraint", f'TardisDroneSite == "{pinned}"',
            "-af", "TardisDroneUuid", "TardisDroneMachineType",
        )  # fmt: skip
        assert {line.split()[0] for line in advertised.splitlines()} == drones
        assert {line.split()[1] for line in advertised.splitlines()} == {"onecore"}
        assert not qstat.jobs(preferred)

        session.finish()
        wait_until(lambda: not squeue.alive(pinned), 300, "the SLURM drone to leave", daemon)
        assert not qstat.jobs(preferred)
        assert "Traceback" not in daemon.log(), daemon.log()[-4000:]
    finally:
        if session is not None:
            session.kill()
        daemon.stop()
        qstat.delete(preferred)
        squeue.cancel(pinned)
        overlay.remove_jobs()
