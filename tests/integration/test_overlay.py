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

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import service_missing
from tests.helpers import overlay
from tests.helpers.daemon import CobaldDaemon, unique_site, wait_until
from tests.integration.test_end_to_end_sge import SGE, Backend
from tests.integration.test_end_to_end_slurm import SLURM

pytestmark = pytest.mark.integration

WORKERS = 2
IDLE_TIME = 10
#: HTCondor's JobStatus of a removed job that has not left the queue yet
JOB_REMOVED = 3


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


def status(config, *options: str) -> list[dict]:
    """``tardis-sge-dask status CONFIG --json [options]`` as an admin runs it."""
    answer = subprocess.run(
        [sys.executable, "-m", "tardis_sge_dask", "status", str(config), "--json", *options],
        capture_output=True,
        text=True,
        cwd=config.parent,
        timeout=120,
    )
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)


@dataclass
class Run:
    """What a phase of the run may look at and act on while the workers are there."""

    site: str
    backend: Backend
    daemon: CobaldDaemon
    session: overlay.PhysicistSession
    logs: Path
    drone_names: set[str]
    #: drones whose startd ads may outlive them: a drone the batch system killed within
    #: its notify time (5 s here) has sometimes no time left to withdraw its ads, which
    #: then stay in the collector for CLASSAD_LIFETIME (15 min; here in 3 of 5 runs)
    killed: set[str] = field(default_factory=set)


def run_overlay(
    tmp_path,
    backend: Backend,
    site: str,
    sshd: dict,
    *,
    during: Callable[[Run], None] | None = None,
    machine_type: dict | None = None,
    environment: dict | None = None,
    drained_by_tardis: bool = True,
) -> None:
    """The physicist's whole session; ``during`` acts while the workers are connected."""
    logs = overlay.owned_directory(f"tsd-{site}-logs-", overlay.PILOT_USER, 0o755)
    config = overlay.overlay_config(
        tmp_path,
        site=site,
        adapter=backend.adapter,
        machine_type={**backend.machine_type, **(machine_type or {})},
        ssh=sshd,
        known_hosts=overlay.pinned_known_hosts(tmp_path),
        logs=logs,
        drones=WORKERS,
        idle_time=IDLE_TIME,
        environment=environment,
    )
    # the physicist's jobs of an interrupted earlier run would be demand for this one
    overlay.remove_jobs()
    wait_until(lambda: not overlay.schedd_jobs(), 60, "an empty overlay schedd")
    daemon = CobaldDaemon(config).start()
    session = None
    try:
        # no waiting worker, no drone
        wait_until(
            lambda: "demand" in daemon.log().lower() or not daemon.alive,
            30,
            "the controller's first reading",
            daemon,
        )
        assert not backend.jobs(site), "drones were submitted without any work"

        session = overlay.PhysicistSession(WORKERS, site=site)
        session.wait_for("scaled", 120)
        # 1. N idle worker jobs in the real schedd, marked for the controller
        jobs = wait_until(
            lambda: len(overlay.schedd_jobs()) == WORKERS and overlay.schedd_jobs(),
            60,
            f"{WORKERS} worker jobs in the overlay schedd",
            daemon,
        )
        assert {job["status"] for job in jobs} <= {1, 2}
        marked = overlay.condor("condor_q", overlay.SUBMIT_USER, "-af", "IsDaskWorker")
        assert marked.split() == ["true"] * WORKERS
        # 2. the controller asks for drones; they go to the batch system as the pilot account
        drones = wait_until(lambda: backend.jobs(site), 120, "drones in the batch system", daemon)
        assert len(drones) <= WORKERS
        # 3./4. the startds join, the workers connect and compute
        joined = session.wait_for("workers", 600)
        result = session.wait_for("result", 300)
        n = 1_000_000
        assert result["total"] == n * (n - 1)
        assert result["worker_pythons"] == [list(sys.version_info[:2])]
        drone_names = {job["name"] for job in backend.jobs(site).values()}
        killed: set[str] = set()
        running = overlay.schedd_jobs()
        assert [job["status"] for job in running] == [2] * WORKERS
        # every worker job runs on the startd of one of this site's drones, which is a
        # batch job right now
        assert all(any(f"@{name}@" in job["host"] for name in drone_names) for job in running), (
            running,
            drone_names,
        )
        assert len(joined["names"]) == WORKERS

        # an admin asks where a physicist's worker runs: worker -> HTCondor job -> startd ->
        # drone -> batch job
        def mapped() -> dict[str, dict]:
            rows = status(config)
            found = {w: [r for r in rows if w in r["worker"].split()] for w in joined["names"]}
            ready = all(len(r) == 1 and r[0]["state"] == "Available" for r in found.values())
            return {w: r[0] for w, r in found.items()} if ready else {}

        rows = wait_until(mapped, 120, "status to map every worker to an Available drone", daemon)
        for worker, row in rows.items():
            assert row["drone_uuid"] in drone_names, row
            assert f"startd slot1@{row['drone_uuid']}@" in row["worker"], row
            assert row["job_id"] in backend.jobs(site), row
            [found] = status(config, "--find", worker)
            assert found["drone_uuid"] == row["drone_uuid"]
        if during is not None:
            run = Run(site, backend, daemon, session, logs, drone_names)
            during(run)
            killed = run.killed

        # 5. the physicist is done
        session.finish()
        # A worker job whose drone was taken away before its starter could report the exit
        # stays removed (X) until its shadow's job lease ends (HTCondor's default: 40 min);
        # for the physicist it is gone, and it holds no slot. Idle, running or held is not.
        wait_until(
            lambda: not [job for job in overlay.schedd_jobs() if job["status"] != JOB_REMOVED],
            120,
            "the worker jobs to leave the schedd",
            daemon,
        )
        wait_until(
            lambda: not backend.jobs(site),
            IDLE_TIME + 300,
            "the drones to leave the batch system",
            daemon,
        )
        wait_until(
            lambda: not (set(overlay.drone_startds()) & (drone_names - killed)),
            120,
            "the drone startds to leave the collector",
            daemon,
        )
        if drained_by_tardis:
            # TARDIS drained them through HTCondor before the batch jobs were removed
            assert "in DrainingState" in daemon.log(), daemon.log()[-4000:]
        # 6. nothing of the drones is left on the node
        wait_until(
            lambda: (
                not overlay.account_processes(
                    overlay.PILOT_USER,
                    "condor_master",
                    "condor_startd",
                    "condor_starter",
                    "bwrap",
                    drone_prefix=f"{site}-",
                )
            ),
            60,
            "the pilot account's drone processes to end",
            daemon,
        )
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


#: how an admin takes a drone away with a warning: Grid Engine's qdel of a -notify job
#: (SIGUSR2, then SIGKILL after the queue's notify time); SLURM's signal to the batch
#: shell (docs/pilot.md: plain scancel would also kill the worker at once)
TAKE_AWAY = {"SGE": ["qdel"], "SlurmBatch": ["scancel", "-b", "-s", "USR2"]}


def take_a_drone_away_mid_task(run: Run) -> None:
    run.session.send("slow 2 16")
    run.session.wait_for("slow-started", 120)
    jobs = run.backend.jobs(run.site)
    victim_id, victim = sorted(jobs.items())[0]
    subprocess.run([*TAKE_AWAY[run.backend.adapter], victim_id], check=True, capture_output=True)
    run.killed.add(victim["name"])
    result = run.session.wait_for("slow-result", 600)
    # no task lost: every square is there, computed exactly as asked
    assert result["squares"] == [index * index for index in range(16)]
    wait_until(
        lambda: victim_id not in run.backend.jobs(run.site),
        120,
        "the taken drone to leave the batch system",
        run.daemon,
    )
    said = "".join(path.read_text() for path in run.logs.glob(f"{victim['name']}*"))
    # the startd was told to go (graceful: its worker job vacated, requeued, run elsewhere)
    assert "draining the htcondor payload" in said, said
    assert "drone-pilot: error" not in said, said


@pytest.mark.parametrize("backend", [SGE, SLURM], ids=["grid_engine", "slurm"])
def test_no_task_lost_when_a_drone_is_taken_away(
    backend, request, sshd, overlay_pool, overlay_image, tmp_path
):
    request.getfixturevalue("sge" if backend is SGE else "slurm")
    run_overlay(tmp_path, backend, unique_site("ovtake"), sshd, during=take_a_drone_away_mid_task)


OUTAGE = 30  # seconds the collector is down


def stop_the_collector(run: Run) -> None:
    before = set(run.backend.jobs(run.site))
    subprocess.run(["condor_off", "-daemon", "collector"], check=True, capture_output=True)
    try:
        time.sleep(OUTAGE)
    finally:
        subprocess.run(["condor_on", "-daemon", "collector"], check=True, capture_output=True)
    wait_until(overlay.pool_answers, 60, "the collector to answer again", run.daemon)
    # The startds take minutes to be in the restarted collector again (measured here: about
    # 4 min with a 10 s update interval); HTCondorOverlay keeps their status meanwhile.
    time.sleep(20)
    assert set(run.backend.jobs(run.site)) == before, "a drone was removed during the outage"
    log = run.daemon.log()
    for state in ("in DrainState", "in DrainingState", "in ShutDownState", "in CleanupState"):
        assert state not in log, f"{state} during a collector outage:\n{log[-4000:]}"
    # the work goes on on the same drones
    assert run.session.send("sum") is None
    assert run.session.wait_for("sum", 300)["total"] == 1_000_000 * 999_999


def test_a_collector_outage_drains_and_kills_no_drone(
    sge, sshd, overlay_pool, overlay_image, tmp_path
):
    run_overlay(
        tmp_path,
        SGE,
        unique_site("ovcoll"),
        sshd,
        during=stop_the_collector,
        environment={"PILOT_STARTD_UPDATE_INTERVAL": 10},
    )


WALLTIME = 150
MARGIN = 60


def outlive_the_retire_time(run: Run) -> None:
    """Wait past the drones' retire time; they must leave on their own, before h_rt."""
    started = {job_id: job["name"] for job_id, job in run.backend.jobs(run.site).items()}
    wait_until(
        lambda: not (set(started) & set(run.backend.jobs(run.site))),
        WALLTIME + 60,
        "the drones to leave at their retire time",
        run.daemon,
    )
    for job_id, name in started.items():
        # qmaster writes the accounting record a moment after the job left qstat
        accounting = wait_until(
            lambda job_id=job_id: subprocess.run(
                ["qacct", "-j", job_id], capture_output=True, text=True
            ).stdout.strip(),
            60,
            f"the accounting record of job {job_id}",
            run.daemon,
        )
        fields = dict(line.split(None, 1) for line in accounting.splitlines() if " " in line)
        # ended by the pilot, not killed by Grid Engine's h_rt
        assert fields.get("exit_status", "").strip() == "0", accounting
        assert float(fields["ru_wallclock"].split()[0].rstrip("s")) < WALLTIME, accounting
        said = "".join(path.read_text() for path in run.logs.glob(f"{name}.o*"))
        assert "payload finished" in said or "payload left" in said, said


def test_a_drone_leaves_before_its_walltime(sge, sshd, overlay_pool, overlay_image, tmp_path):
    run_overlay(
        tmp_path,
        SGE,
        unique_site("ovwall"),
        sshd,
        during=outlive_the_retire_time,
        machine_type={"Walltime": WALLTIME},
        drained_by_tardis=False,
        environment={"PILOT_LIFETIME_MARGIN": MARGIN, "PILOT_STARTD_UPDATE_INTERVAL": 10},
    )
