"""Faults survived by the real ``python -m cobald.daemon`` on the real Grid Engine and SLURM.

Each scenario ends with its figures: drones before and after, duplicates (a drone with
more than one batch job, seen at any poll or in the log), orphans (drone jobs the registry
does not know, as ``tardis-sge-dask sweep`` finds them), jobs the registry confuses (a
registered job id whose batch job carries another drone's name) and whether the daemon
lives. Durations are printed, not asserted.

Scenarios that stop a shared service bring it back with its ``services/*-up.sh`` (which
is idempotent) whatever happens.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tardis_sge_dask.orphans import drone_name
from tardis_sge_dask.status import DroneRow, read_registry
from tests.helpers import sge as qstat
from tests.helpers import slurm as sq
from tests.helpers.daemon import CobaldDaemon, unified_config, unique_site, wait_until
from tests.helpers.site_sections import sge_site_section, slurm_site_section

pytestmark = pytest.mark.integration

SERVICES = Path(__file__).parent.parent.parent / "services"
RAMP = 30
SUBMITTED = re.compile(r"drone (\S+) \(\S+\): submitted as \w+ job (\d+)")


@dataclass(frozen=True)
class Batch:
    name: str
    adapter: str
    fixture: str
    section: Callable[[Path], dict]
    #: name prefix -> {job id: {name, state}} of jobs that have not ended
    jobs: Callable[[str], dict]
    remove: Callable[[str], None]
    #: the controller's pid file, the script that starts it, and how to ask it
    pidfile: Path
    up: str
    up_env: dict
    ping: list[str]


SGE = Batch(
    "Grid Engine", "SGE", "sge", sge_site_section, qstat.jobs, qstat.delete,
    Path("/var/spool/gridengine/qmaster/qmaster.pid"), "sge-up.sh", {"SGE_SMOKE": "0"},
    ["qstat"],
)  # fmt: skip
SLURM = Batch(
    "SLURM", "SlurmBatch", "slurm", slurm_site_section, sq.alive, sq.cancel,
    Path("/run/slurmctld.pid"), "slurm-up.sh", {"SLURM_SMOKE": "0"}, ["squeue"],
)  # fmt: skip
BATCH_SYSTEMS = [pytest.param(SGE, id="sge"), pytest.param(SLURM, id="slurm")]


@dataclass
class Site:
    batch: Batch
    name: str
    daemon: CobaldDaemon
    demand: Path
    registry: Path
    #: drone name -> every batch job id seen for it
    seen: dict[str, set[str]]

    def drone_jobs(self) -> dict[str, str]:
        """job id -> drone name of the live jobs of this site's drones (polled: remembered)."""
        pattern = drone_name(self.name)
        found = {
            job_id: job["name"]
            for job_id, job in self.batch.jobs(self.name.lower()).items()
            if pattern.fullmatch(job["name"])
        }
        for job_id, name in found.items():
            self.seen.setdefault(name, set()).add(job_id)
        return found

    def registry_rows(self) -> list[DroneRow]:
        # the daemon creates its registry a moment after it starts
        return read_registry(self.registry) if self.registry.exists() else []

    def figures(self) -> dict[str, int | bool]:
        jobs = self.drone_jobs()
        registered = {row.drone_uuid: row.job_id for row in self.registry_rows()}
        for name, job_id in SUBMITTED.findall(self.daemon.log()):
            self.seen.setdefault(name, set()).add(job_id)
        return {
            "drones": len(jobs),
            "duplicates": sum(len(ids) - 1 for ids in self.seen.values()),
            "orphans": len(set(jobs.values()) - set(registered)),
            "confused": sum(
                1 for name, job_id in registered.items() if job_id in jobs and jobs[job_id] != name
            ),
            "daemon alive": self.daemon.alive,
        }


@pytest.fixture
def site(request, tmp_path):
    batch: Batch = request.param
    request.getfixturevalue(batch.fixture)
    name = unique_site("fault")
    config, demand = unified_config(
        tmp_path, site=name, adapter=batch.adapter, site_section=batch.section(tmp_path),
        quota=RAMP + 10,
    )  # fmt: skip
    daemon = CobaldDaemon(config)
    yield Site(batch, name, daemon, demand, tmp_path / "drones.db", {})
    daemon.stop()
    batch.remove(name.lower())


def settled(site: Site, drones: int) -> Callable[[], dict | None]:
    def check() -> dict | None:
        figures = site.figures()
        done = figures["drones"] == drones and not figures["orphans"]
        return figures if done else None

    return check


def settled_figures(site: Site, drones: int, timeout: float, seconds: int = 10) -> dict:
    """The figures once ``drones`` drones are registered, read again for ``seconds`` of
    heartbeats and pool cycles: a late duplicate or a lost drone would show by then."""
    after = wait_until(settled(site, drones), timeout, f"{drones} registered drones", site.daemon)
    for _ in range(seconds):
        time.sleep(1)
        after = site.figures()
    return after


def print_reused_ids(log: str) -> None:
    print(
        f"\njobs the controller lost and whose id it reused: {log.count('reused the id')};"
        f" registry rows that yielded a reused id: {log.count('handed out twice')};"
        f" drones gone without an accounting record: {log.count('without an accounting record')}"
    )


def report(title: str, site: Site, before: dict, after: dict, started: float) -> None:
    print(
        f"\n{site.batch.name}, {title}: drones before {before['drones']}, after"
        f" {after['drones']}; duplicates {after['duplicates']}, orphans {after['orphans']},"
        f" confused {after['confused']}; daemon alive {after['daemon alive']};"
        f" {time.monotonic() - started:.0f} s"
    )


@pytest.mark.parametrize("site", BATCH_SYSTEMS, indirect=True)
def test_sigkill_mid_ramp_leaves_no_duplicate_and_no_untracked_job(site: Site):
    started = time.monotonic()
    site.daemon.start()
    site.demand.write_text(str(RAMP))
    # kill as soon as the first few of the RAMP submissions are out
    deadline = time.monotonic() + 120
    while site.daemon.log().count(": submitted as ") < 3 and time.monotonic() < deadline:
        assert site.daemon.alive, site.daemon.log()[-3000:]
        time.sleep(0.05)
    site.daemon.kill()
    before = site.figures()
    submitted_at_kill = site.daemon.log().count(": submitted as ")

    site.daemon.start()
    after = settled_figures(site, RAMP, 240)
    print(f"\nsubmissions logged before the kill: {submitted_at_kill}/{RAMP}")
    report("daemon SIGKILLed mid-ramp", site, before, after, started)
    assert after == {
        "drones": RAMP, "duplicates": 0, "orphans": 0, "confused": 0, "daemon alive": True
    }  # fmt: skip


def kill_controller(batch: Batch) -> None:
    os.kill(int(batch.pidfile.read_text()), signal.SIGKILL)
    wait_until(
        lambda: subprocess.run(batch.ping, capture_output=True).returncode != 0,
        30,
        f"{batch.name}'s controller to stop answering",
    )


def bring_up(batch: Batch) -> None:
    subprocess.run(
        ["bash", str(SERVICES / batch.up)],
        check=True,
        capture_output=True,
        env={**os.environ, **batch.up_env},
    )


# slurmctld killed with SIGKILL forgets the jobs it accepted last and hands their ids out
# again (measured, SLURM 22.05: a drone's job 150 lost, the next submission got 150): the
# lost drone must see its job gone (not take the new one), and the registry must not stop
# the daemon on the second holder of the id (tardis_sge_dask/registry_plugin.py)
@pytest.mark.parametrize("site", BATCH_SYSTEMS, indirect=True)
def test_controller_sigkilled_and_restarted_confuses_no_drone(site: Site):
    started = time.monotonic()
    site.daemon.start()
    site.demand.write_text("3")
    wait_until(settled(site, 3), 120, "3 registered drones", site.daemon)
    before = site.figures()
    try:
        kill_controller(site.batch)
        # the daemon meets a dead controller for several heartbeats
        time.sleep(15)
        assert site.daemon.alive, site.daemon.log()[-3000:]
    finally:
        bring_up(site.batch)
    # a new submission after the restart: its job id may be one an earlier job had
    site.demand.write_text("4")
    after = settled_figures(site, 4, 180)
    print_reused_ids(site.daemon.log())
    report("controller SIGKILLed and restarted", site, before, after, started)
    assert after == {
        "drones": 4, "duplicates": 0, "orphans": 0, "confused": 0, "daemon alive": True
    }  # fmt: skip


@pytest.mark.parametrize("site", BATCH_SYSTEMS, indirect=True)
def test_controller_sigkilled_right_after_a_submission_confuses_no_drone(site: Site):
    # the controller's last accepted job is the one it most likely forgets: kill it at once
    started = time.monotonic()
    site.daemon.start()
    site.demand.write_text("3")
    wait_until(settled(site, 3), 120, "3 registered drones", site.daemon)
    before = site.figures()
    site.demand.write_text("4")
    try:
        deadline = time.monotonic() + 60
        while site.daemon.log().count(": submitted as ") < 4 and time.monotonic() < deadline:
            assert site.daemon.alive, site.daemon.log()[-3000:]
            time.sleep(0.05)
        kill_controller(site.batch)
        time.sleep(15)
        assert site.daemon.alive, site.daemon.log()[-3000:]
    finally:
        bring_up(site.batch)
    # a drone whose job the controller forgot is replaced; one more is submitted after
    site.demand.write_text("5")
    after = settled_figures(site, 5, 240)
    print_reused_ids(site.daemon.log())
    report("controller SIGKILLed right after a submission", site, before, after, started)
    assert after == {
        "drones": 5, "duplicates": 0, "orphans": 0, "confused": 0, "daemon alive": True
    }  # fmt: skip
