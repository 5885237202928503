"""The real ``python -m cobald.daemon`` driving drones on the real Grid Engine.

The overlay batch system is TARDIS's FakeBatchSystem (every running drone is "Available"):
these tests are about the site side — submission, tracking, removal and recovery.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import sge as qstat
from tests.helpers.daemon import PILOT, CobaldDaemon, unified_config, unique_site, wait_until

pytestmark = pytest.mark.integration

SERVICES = Path(__file__).parent.parent.parent / "services"
QMASTER_PIDFILE = Path("/var/spool/gridengine/qmaster/qmaster.pid")


def sge_site_section(log_directory: Path) -> dict:
    return {
        "accounting_grace": 5,
        "MachineTypes": ["one"],
        "MachineMetaData": {"one": {"Cores": 1, "Memory": 1, "Disk": 1}},
        "MachineTypeConfiguration": {
            "one": {
                "StartupCommand": str(PILOT),
                "Queue": "all.q",
                "Walltime": "0:30:00",
                "MemoryResource": "h_vmem",
                "LogDirectory": str(log_directory),
            }
        },
    }


@pytest.fixture
def site(sge, tmp_path):
    name = unique_site("dsge")
    config, demand = unified_config(
        tmp_path, site=name, adapter="SGE", site_section=sge_site_section(tmp_path)
    )
    daemon = CobaldDaemon(config)
    yield name, daemon, demand
    daemon.stop()
    qstat.delete(name)


def count(n: int, name: str, only_running: bool = False):
    def check():
        jobs = qstat.running(name) if only_running else qstat.jobs(name)
        return (jobs or True) if len(jobs) == n else None

    return check


def test_demand_brings_drones_up_replaces_lost_ones_and_removes_them(site):
    name, daemon, demand = site
    daemon.start()
    demand.write_text("3")
    jobs = wait_until(count(3, name, only_running=True), 120, "3 running drones", daemon)
    some_job = sorted(jobs)[0]
    environment = qstat.environment(some_job)
    assert environment["TardisDroneUuid"] == jobs[some_job]["name"]
    assert environment["TardisDroneCores"] == "1"
    assert qstat.hard_resources(some_job)["h_rt"] == "1800"

    # an admin removes one drone behind the daemon's back: noticed, and replaced
    subprocess.run(["qdel", some_job], check=True, capture_output=True)
    wait_until(
        lambda: some_job not in qstat.jobs(name) and len(qstat.running(name)) == 3,
        180,
        "the deleted drone to be replaced",
        daemon,
    )
    assert f"sge job {some_job}): ended" in daemon.log()

    demand.write_text("0")
    wait_until(count(0, name), 180, "all drones removed at demand 0", daemon)
    assert daemon.alive


def test_restart_after_sigkill_finds_every_drone_and_submits_no_duplicates(site):
    name, daemon, demand = site
    daemon.start()
    demand.write_text("2")
    before = set(wait_until(count(2, name, only_running=True), 120, "2 running drones", daemon))
    daemon.kill()

    daemon.start()
    wait_until(lambda: "restored 2 drone(s)" in daemon.log(), 60, "drones restored", daemon)
    # several heartbeats and factory cycles: a duplicate would have been submitted by now
    time.sleep(15)
    assert set(qstat.jobs(name)) == before
    demand.write_text("0")
    wait_until(count(0, name), 180, "restored drones removed at demand 0", daemon)


def test_qmaster_outage_is_survived(site):
    name, daemon, demand = site
    daemon.start()
    demand.write_text("2")
    before = set(wait_until(count(2, name, only_running=True), 120, "2 running drones", daemon))
    qmaster = int(QMASTER_PIDFILE.read_text())
    os.kill(qmaster, signal.SIGTERM)
    try:
        wait_until(
            lambda: subprocess.run(["qstat"], capture_output=True).returncode != 0,
            30,
            "qmaster to stop",
        )
        time.sleep(30)
        assert daemon.alive, daemon.log()[-3000:]
    finally:
        subprocess.run(
            ["bash", str(SERVICES / "sge-up.sh")],
            check=True,
            capture_output=True,
            env={**os.environ, "SGE_SMOKE": "0"},
        )
    # the drones are still tracked: no replacement for jobs that never went away...
    time.sleep(10)
    assert set(qstat.jobs(name)) == before
    # ...and the daemon acts again once Grid Engine is back
    demand.write_text("3")
    wait_until(count(3, name), 120, "a third drone after the outage", daemon)
    assert "did not answer" in daemon.log() or "command failed" in daemon.log()
    demand.write_text("0")
    wait_until(count(0, name), 180, "all drones removed at demand 0", daemon)
