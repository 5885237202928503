"""The real ``python -m cobald.daemon`` driving drones on the real SLURM.

The same scenarios as for Grid Engine (test_sge_daemon.py). The overlay batch system is
TARDIS's FakeBatchSystem (every running drone is "Available"): these tests are about
the site side. The local node has 2 cores, so 2 drones of 1 core is the most that run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import slurm as sq
from tests.helpers.daemon import CobaldDaemon, unified_config, unique_site, wait_until

pytestmark = pytest.mark.integration

SERVICES = Path(__file__).parent.parent.parent / "services"
SIGNAL_PILOT = Path(__file__).parent / "data" / "signal-pilot.sh"
SLURMCTLD_PIDFILE = Path("/run/slurmctld.pid")


def slurm_site_section(log_directory: Path) -> dict:
    return {
        "accounting_grace": 5,
        "MachineTypes": ["one"],
        "MachineMetaData": {"one": {"Cores": 1, "Memory": 1, "Disk": 1}},
        "MachineTypeConfiguration": {
            "one": {
                "StartupCommand": str(SIGNAL_PILOT),
                "Partition": "debug",
                "Walltime": "0:30:00",
                "LogDirectory": str(log_directory),
                "StopGrace": 60,
            }
        },
    }


@pytest.fixture
def site(slurm, tmp_path):
    name = unique_site("dslurm")
    config, demand = unified_config(
        tmp_path, site=name, adapter="SlurmBatch", site_section=slurm_site_section(tmp_path)
    )
    daemon = CobaldDaemon(config)
    yield name, daemon, demand, tmp_path
    daemon.stop()
    sq.cancel(name)


def count(n: int, name: str, only_running: bool = False):
    def check():
        jobs = sq.running(name) if only_running else sq.alive(name)
        # wait_until wants a truthy answer: an empty dict is the success of n == 0
        return (jobs or True) if len(jobs) == n else None

    return check


def test_demand_brings_drones_up_replaces_lost_ones_and_removes_them_gracefully(site):
    name, daemon, demand, logs = site
    daemon.start()
    demand.write_text("2")
    jobs = wait_until(count(2, name, only_running=True), 120, "2 running drones", daemon)
    some_job = sorted(jobs)[0]
    assert sq.show(some_job)["TimeLimit"] == "00:30:00"

    # an admin removes one drone behind the daemon's back: noticed, and replaced
    subprocess.run(["scancel", some_job], check=True, capture_output=True)
    wait_until(
        lambda: some_job not in sq.alive(name) and len(sq.running(name)) == 2,
        180,
        "the cancelled drone to be replaced",
        daemon,
    )
    assert re.search(rf"slurm job {some_job}\): state \w+ -> CANCELLED", daemon.log())

    demand.write_text("0")
    survivors = sorted(sq.alive(name))
    wait_until(count(0, name), 180, "all drones removed at demand 0", daemon)
    # demand 0 stops drones gracefully: each pilot saw the warning and ended by itself,
    # long before the 60 s grace would have cancelled it
    for job_id in survivors:
        drone_uuid = sq.jobs(name)[job_id]["name"]
        lines = (logs / f"{drone_uuid}-{job_id}.out").read_text().splitlines()
        assert lines[-1] == "got USR2"
        wait_until(lambda job_id=job_id: sq.accounting(job_id), 30, "the accounting record")
        assert sq.accounting(job_id) == ("COMPLETED", "0:0")
    assert daemon.alive


def test_restart_after_sigkill_finds_every_drone_and_submits_no_duplicates(site):
    name, daemon, demand, _ = site
    daemon.start()
    demand.write_text("2")
    before = set(wait_until(count(2, name, only_running=True), 120, "2 running drones", daemon))
    daemon.kill()

    daemon.start()
    wait_until(lambda: "restored 2 drone(s)" in daemon.log(), 60, "drones restored", daemon)
    # several heartbeats and factory cycles: a duplicate would have been submitted by now
    time.sleep(15)
    assert set(sq.alive(name)) == before
    demand.write_text("0")
    wait_until(count(0, name), 180, "restored drones removed at demand 0", daemon)


def test_slurmctld_outage_is_survived(site):
    name, daemon, demand, _ = site
    daemon.start()
    demand.write_text("1")
    before = set(wait_until(count(1, name, only_running=True), 120, "a running drone", daemon))
    slurmctld = int(SLURMCTLD_PIDFILE.read_text())
    os.kill(slurmctld, signal.SIGTERM)
    try:
        wait_until(
            lambda: subprocess.run(["squeue"], capture_output=True).returncode != 0,
            30,
            "slurmctld to stop",
        )
        time.sleep(30)
        assert daemon.alive, daemon.log()[-3000:]
    finally:
        subprocess.run(
            ["bash", str(SERVICES / "slurm-up.sh")],
            check=True,
            capture_output=True,
            env={**os.environ, "SLURM_SMOKE": "0"},
        )
    # the drone is still tracked: no replacement for a job that never went away...
    time.sleep(10)
    assert set(sq.alive(name)) == before
    # ...and the daemon acts again once SLURM is back
    demand.write_text("2")
    wait_until(count(2, name), 120, "a second drone after the outage", daemon)
    assert "command failed" in daemon.log() or "did not answer" in daemon.log()
    demand.write_text("0")
    wait_until(count(0, name), 180, "all drones removed at demand 0", daemon)
