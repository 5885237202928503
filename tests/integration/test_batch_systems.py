"""The scenarios every batch system must pass, written once, run on each real one.

Each batch system is a :class:`BatchSystem` description: the adapter's name in
``tardis_sge_dask/registry.py``, its machine-type keys, and how an admin looks at the
user's jobs (listing, accounting, removal) and stops and starts the controller. Every test
here runs once per description in :data:`SYSTEMS`; a third batch system gets all of them
by adding its description (docs/maintainers.md, "Adding a batch system"). What only one
batch system does (SLURM's warning before the time limit, ...) stays in its own file.

Two levels: the adapter alone, asked as a drone asks it each heartbeat, and the real
``python -m cobald.daemon`` driving drones (its overlay batch system is TARDIS's
FakeBatchSystem: every running drone is "Available", the site side is what is tested).
The stand-in pilot (data/signal-pilot.sh) writes each signal it gets to its output and
ends on the first warning, as the real pilot drains on it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tardis.exceptions.tardisexceptions import TardisResourceStatusUpdateFailed, TardisTimeout
from tardis.interfaces.siteadapter import ResourceStatus
from tardis.utilities.executors.shellexecutor import ShellExecutor
from tardis.utilities.executors.sshexecutor import SSHExecutor

from tardis_sge_dask.registry import SITE_ADAPTERS
from tardis_sge_dask.sites.settings import SiteConfigError
from tests.helpers import sge as qstat
from tests.helpers import slurm as sq
from tests.helpers.daemon import CobaldDaemon, unified_config, unique_site, wait_until
from tests.helpers.site_sections import one_core_site_section
from tests.helpers.standins import status_until
from tests.helpers.tardis_config import MACHINE_TYPE, drone, make_adapter, site_section

pytestmark = pytest.mark.integration

DATA = Path(__file__).parent / "data"
SERVICES = Path(__file__).parent.parent.parent / "services"
#: prints "started drone ...", then "got <SIGNAL>" and exits 0 on USR1, USR2 or TERM
SIGNAL_PILOT = DATA / "signal-pilot.sh"
#: prints "started drone ...", then exits with STANDIN_EXIT
EXIT_PILOT = DATA / "exit-pilot.sh"


@dataclass(frozen=True)
class BatchSystem:
    """One real batch system, as the shared scenarios drive and look at it."""

    #: the test id
    name: str
    #: the ``adapter:`` name in tardis_sge_dask/registry.py
    adapter: str
    #: the tests/conftest.py fixture that finds the service (fails under CI=true)
    service: str
    #: machine-type keys every drone gets (queue, parallel environment, ...)
    machine_type: dict[str, Any]
    #: Cores/Memory/Disk of one drone of the adapter-level tests
    meta_data: dict[str, Any]
    #: job id -> {name, state} of the jobs not yet ended whose names start with a prefix
    alive: Callable[[str], dict[str, dict[str, str]]]
    #: the same, running jobs only
    running: Callable[[str], dict[str, dict[str, str]]]
    #: an admin's removal of one job (qdel / scancel)
    remove: Callable[[str], None]
    #: cleanup: remove every job of a name prefix
    remove_all: Callable[[str], None]
    #: the exit status the accounting recorded for a job, None before the record exists
    exit_status: Callable[[str], str | None]
    #: the file a job's stdout goes to under LogDirectory: (directory, drone, job id)
    output: Callable[[Path, str, str], Path]
    #: ExtraOptions writing a value into a job field, and that field read back
    value_options: Callable[[str], list[str]]
    recorded_value: Callable[[str], str | None]
    #: a job-script directive that would turn the drone into an array of three jobs
    array_directive: str
    is_array: Callable[[str], bool]
    #: ExtraOptions that submit a job held in the queue
    hold_options: list[str]
    #: what the batch system recorded for a submitted drone, checked against its keys
    check_submission: Callable[[str, str], None]
    #: the controller daemon: its pid file, the command failing while it is down, and the
    #: services/ script (with its smoke-test switch) that brings it back
    controller_pidfile: Path
    controller_probe: list[str]
    controller_up: str
    controller_up_env: dict[str, str]
    #: drones of one core that run at once on this machine, next to other tests' jobs
    max_drones: int
    #: a pattern the daemon logs when it notices a job removed behind its back
    removal_noticed: str
    #: a job id the batch system has never given out (beyond its highest id)
    unknown_job_id: str
    #: extra keys of the daemon-level machine type
    daemon_machine_type: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ Grid Engine
def _sge_remove(job_id: str) -> None:
    subprocess.run(["qdel", job_id], check=True, capture_output=True)


def _sge_exit_status(job_id: str) -> str | None:
    out = subprocess.run(["qacct", "-j", job_id], capture_output=True, text=True).stdout
    values = [line.split(None, 1) for line in out.splitlines() if line.startswith("exit_status")]
    return values[-1][1].strip() if values else None


def _sge_context(job_id: str) -> str | None:
    """The ``note`` of ``qsub -ac note=...``, as qstat -j shows it."""
    for item in qstat.details(job_id).iter("context_list"):
        if item.findtext("VA_variable") == "note":
            return item.findtext("VA_value")
    return None


def _sge_is_array(job_id: str) -> bool:
    out = subprocess.run(["qstat", "-j", job_id], capture_output=True, text=True).stdout
    return "job-array tasks" in out


def _sge_submission(job_id: str, drone_uuid: str) -> None:
    # what every user can see with qstat -j: the drone variables, and nothing else of ours
    environment = qstat.environment(job_id)
    assert environment["TardisDroneUuid"] == drone_uuid
    assert environment["TardisDroneCores"] == "2"
    assert not any(name.startswith("PILOT_") for name in environment)
    resources = qstat.hard_resources(job_id)
    assert resources["h_rt"] == "600"
    # consumable memory is per slot: 4 GB over the 2 slots of the parallel environment
    assert resources["h_vmem"].startswith("2048")


SGE = BatchSystem(
    name="sge",
    adapter="SGE",
    service="sge",
    machine_type={"Queue": "all.q", "ParallelEnvironment": "smp"},
    meta_data={"Cores": 2, "Memory": 4, "Disk": 10},
    alive=qstat.jobs,
    running=qstat.running,
    remove=_sge_remove,
    remove_all=qstat.delete,
    exit_status=_sge_exit_status,
    output=lambda logs, drone_uuid, job_id: logs / f"{drone_uuid}.o{job_id}",
    value_options=lambda value: ["-ac", f"note={value}"],
    recorded_value=_sge_context,
    # qsub reads lines of the script beginning with #$ as options
    array_directive="#$ -t 1-3",
    is_array=_sge_is_array,
    hold_options=["-h"],
    check_submission=_sge_submission,
    controller_pidfile=Path("/var/spool/gridengine/qmaster/qmaster.pid"),
    controller_probe=["qstat"],
    controller_up="sge-up.sh",
    controller_up_env={"SGE_SMOKE": "0"},
    max_drones=3,
    removal_noticed=r"sge job {job}\): ended",
    unknown_job_id="99999999",
)


# ------------------------------------------------------------------------ SLURM
def _slurm_remove(job_id: str) -> None:
    subprocess.run(["scancel", job_id], check=True, capture_output=True)


#: sacct's states of a job that has ended (a running job has a record, too)
SLURM_ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


def _slurm_exit_status(job_id: str) -> str | None:
    record = sq.accounting(job_id)
    if record is None or record[0].split()[0] not in SLURM_ENDED:
        return None
    return record[1]


def _slurm_comment(job_id: str) -> str | None:
    out = subprocess.run(
        ["squeue", "-h", "-j", job_id, "-o", "%k"], capture_output=True, text=True, check=True
    ).stdout
    return out.rstrip("\n")


def _slurm_is_array(job_id: str) -> bool:
    return "ArrayJobId" in sq.show(job_id)


def _slurm_submission(job_id: str, drone_uuid: str) -> None:
    job = sq.show(job_id)
    assert job["JobName"] == drone_uuid
    assert job["TimeLimit"] == "00:10:00"
    assert job["MinMemoryNode"] == "1G"
    assert job["NumCPUs"] == "1"
    assert job["Requeue"] == "0"


SLURM = BatchSystem(
    name="slurm",
    adapter="SlurmBatch",
    service="slurm",
    machine_type={"Partition": "debug"},
    # the local node has 2 cores, shared with other tests
    meta_data={"Cores": 1, "Memory": 1, "Disk": 1},
    alive=sq.alive,
    running=sq.running,
    remove=_slurm_remove,
    remove_all=sq.cancel,
    exit_status=_slurm_exit_status,
    output=lambda logs, drone_uuid, job_id: logs / f"{drone_uuid}-{job_id}.out",
    value_options=lambda value: [f"--comment={value}"],
    recorded_value=_slurm_comment,
    array_directive="#SBATCH --array=1-3",
    is_array=_slurm_is_array,
    hold_options=["--hold"],
    check_submission=_slurm_submission,
    controller_pidfile=Path("/run/slurmctld.pid"),
    controller_probe=["squeue"],
    controller_up="slurm-up.sh",
    controller_up_env={"SLURM_SMOKE": "0"},
    max_drones=2,
    removal_noticed=r"slurm job {job}\): state \w+ -> CANCELLED",
    # MaxJobId is 67,043,328 by default
    unknown_job_id="99999999",
    # a pilot that missed the warning is cancelled soon: the graceful checks tell the two
    daemon_machine_type={"StopGrace": 10},
)

SYSTEMS = [SGE, SLURM]


@pytest.fixture(params=SYSTEMS, ids=lambda system: system.name)
def system(request) -> BatchSystem:
    """Each batch system in turn; its service fixture fails the test under CI=true."""
    request.getfixturevalue(request.param.service)
    return request.param


# -------------------------------------------------------------- adapter level
def batch_adapter(
    system: BatchSystem,
    site: str,
    logs: Path,
    executor: Any = None,
    command_timeout: float = 60,
    pilot: Path = SIGNAL_PILOT,
    hidden: set[str] | None = None,
    **machine_type: Any,
):
    """The system's adapter on a site of its own; jobs in ``hidden`` left out of its listing."""
    keys = {"Walltime": 600, "LogDirectory": str(logs), **system.machine_type, **machine_type}
    section = site_section(str(pilot), **keys)
    section["MachineMetaData"][MACHINE_TYPE] = dict(system.meta_data)
    section["executor"] = executor or ShellExecutor()
    section["accounting_grace"] = 10
    section["command_timeout"] = command_timeout
    adapter_class = SITE_ADAPTERS[system.adapter].load()
    if hidden is not None:
        adapter_class = hiding(adapter_class, hidden)
    return make_adapter(adapter_class, system.adapter, section, site=site)


def hiding(adapter_class: type, hidden: set[str]) -> type:
    """The adapter, its listing read without the jobs in ``hidden`` (changed as the test goes)."""

    class Hiding(adapter_class):
        def parse_listing(self, stdout: str) -> dict:
            jobs = super().parse_listing(stdout)
            return {job_id: job for job_id, job in jobs.items() if job_id not in hidden}

    return Hiding


async def submitted(adapter, site: str):
    attributes = drone(f"{site}-0123456789")
    attributes.update(await adapter.deploy_resource(attributes))
    return attributes


def output(system: BatchSystem, logs: Path, attributes) -> list[str]:
    return lines_of(system.output(logs, attributes.drone_uuid, attributes.remote_resource_uuid))


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def pilot_started(system: BatchSystem, logs: Path, drone_uuid: str, job_id: str) -> bool:
    """Whether the job's pilot runs: the listing says "running" once the node is chosen,
    a while before the node starts the job script (up to a minute on a busy slurmd)."""
    return any(
        line.startswith(f"started drone {drone_uuid} ")
        for line in lines_of(system.output(logs, drone_uuid, job_id))
    )


async def drone_lifecycle(system: BatchSystem, adapter, site: str, logs: Path) -> None:
    attributes = await submitted(adapter, site)
    job_id = attributes.remote_resource_uuid
    try:
        assert system.alive(site)[job_id]["name"] == attributes.drone_uuid
        system.check_submission(job_id, attributes.drone_uuid)
        await status_until(adapter, attributes, ResourceStatus.Running)
        started = f"started drone {attributes.drone_uuid} cores={system.meta_data['Cores']}"
        wait_until(lambda: started in output(system, logs, attributes), 90, "the pilot's start")
        # stop is graceful: the pilot is warned and ends by itself, no kill needed
        await adapter.stop_resource(attributes)
        await status_until(adapter, attributes, ResourceStatus.Deleted)
        assert output(system, logs, attributes)[-1] == "got USR2"
        assert job_id not in system.alive(site)
    finally:
        system.remove_all(site)


async def test_listing_follows_a_drone_from_submission_to_graceful_stop(system, tmp_path):
    site = unique_site(f"it{system.name}")
    await drone_lifecycle(system, batch_adapter(system, site, tmp_path), site, tmp_path)


def known_hosts(tmp_path: Path) -> Path:
    key = Path("/etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
    path = tmp_path / "known_hosts"
    path.write_text(f"[127.0.0.1]:2222 {key[0]} {key[1]}\n")
    return path


async def test_the_same_over_ssh_with_a_checked_host_key(system, sshd, tmp_path):
    site = unique_site(f"ssh{system.name}")
    executor = SSHExecutor(**sshd, known_hosts=str(known_hosts(tmp_path)))
    # the jobs run as the ssh login's user, who cannot write into pytest's private tmp
    logs = Path(tempfile.mkdtemp(prefix=f"{site}-"))
    logs.chmod(0o1777)
    try:
        adapter = batch_adapter(system, site, logs, executor)
        await drone_lifecycle(system, adapter, site, logs)
    finally:
        shutil.rmtree(logs, ignore_errors=True)


async def test_an_unknown_host_key_refuses_the_submit_host(system, sshd, tmp_path):
    site = unique_site(f"ssh{system.name}")
    wrong = tmp_path / "known_hosts"
    # a different key for the same host: a man in the middle must not get our jobs
    wrong.write_text(
        "[127.0.0.1]:2222 ssh-ed25519 "
        "AAAAC3NzaC1lZDI1NTE5AAAAIGq0ZpSxGZ1tq3pVmYB0w8mBm5y1cLwYzZ4nOnQx5x8a\n"
    )
    executor = SSHExecutor(**sshd, known_hosts=str(wrong), on_disconnect_retry=False)
    # TARDIS's SSHExecutor retries a refused host key with back-off for minutes; the
    # adapter's command timeout turns that into a retry later, never a submission
    adapter = batch_adapter(system, site, tmp_path, executor, command_timeout=2)
    with pytest.raises((TardisResourceStatusUpdateFailed, TardisTimeout)):
        with adapter.handle_exceptions():
            await adapter.deploy_resource(drone(f"{site}-0123456789"))
    assert not system.alive(site)


async def test_a_finished_drone_is_reported_with_the_exit_status_the_accounting_recorded(
    system, tmp_path, caplog
):
    site = unique_site(f"it{system.name}")
    hidden: set[str] = set()
    adapter = batch_adapter(
        system,
        site,
        tmp_path,
        pilot=EXIT_PILOT,
        hidden=hidden,
        JobEnvironment={"STANDIN_EXIT": "3"},
    )
    attributes = await submitted(adapter, site)
    job_id = attributes.remote_resource_uuid
    try:
        recorded = wait_until(lambda: system.exit_status(job_id), 90, "the accounting record")
        # once the listing no longer shows the job (SLURM keeps ended jobs there for
        # MinJobAge, 300 s here: left out of the listing instead), only the accounting
        # can tell how it ended
        hidden.add(job_id)
        with caplog.at_level(logging.INFO, logger="cobald.runtime.tardis_sge_dask"):
            await status_until(adapter, attributes, ResourceStatus.Deleted)
        ended = [record for record in caplog.records if "ended, exit status" in record.message]
        assert len(ended) == 1
        assert f"ended, exit status {recorded}" in ended[0].message
        assert recorded.startswith("3")
        # a failed drone is a warning in the daemon's log, not routine
        assert ended[0].levelno == logging.WARNING
    finally:
        system.remove_all(site)


async def test_a_job_removed_behind_the_adapters_back_is_noticed_and_stays_gone(system, tmp_path):
    site = unique_site(f"it{system.name}")
    adapter = batch_adapter(system, site, tmp_path)
    attributes = await submitted(adapter, site)
    job_id = attributes.remote_resource_uuid
    try:
        await status_until(adapter, attributes, ResourceStatus.Running)
        wait_until(
            lambda: pilot_started(system, tmp_path, attributes.drone_uuid, job_id),
            90,
            "the pilot's start",
        )
        system.remove(job_id)
        await status_until(adapter, attributes, ResourceStatus.Deleted)
        # TARDIS then stops and terminates the drone: the job is already gone, which must
        # neither fail (the drone would be retried forever) nor touch another job
        await adapter.stop_resource(attributes)
        await adapter.terminate_resource(attributes)
        assert (await adapter.resource_status(attributes)).resource_status is (
            ResourceStatus.Deleted
        )
    finally:
        system.remove_all(site)


async def test_stopping_a_queued_drone_removes_it(system, tmp_path):
    site = unique_site(f"it{system.name}")
    adapter = batch_adapter(system, site, tmp_path, ExtraOptions=system.hold_options)
    # a job removed while queued has no accounting record: only the grace ends the wait
    adapter.site_settings = dataclasses.replace(adapter.site_settings, accounting_grace=2)
    attributes = await submitted(adapter, site)
    try:
        await status_until(adapter, attributes, ResourceStatus.Booting)
        await adapter.stop_resource(attributes)
        await status_until(adapter, attributes, ResourceStatus.Deleted)
        assert attributes.remote_resource_uuid not in system.alive(site)
    finally:
        system.remove_all(site)


async def test_queued_drones_and_an_unknown_job_are_removed_with_one_command(
    system, tmp_path, caplog
):
    site = unique_site(f"it{system.name}")
    adapter = batch_adapter(system, site, tmp_path, ExtraOptions=system.hold_options)
    queued = []
    try:
        for index in range(4):
            attributes = drone(f"{site}-{index:010d}")
            attributes.update(await adapter.deploy_resource(attributes))
            queued.append(attributes)
        job_ids = {attributes.remote_resource_uuid for attributes in queued}
        assert job_ids <= set(system.alive(site))
        unknown = drone(f"{site}-9999999999", job_id=system.unknown_job_id)
        with caplog.at_level(logging.DEBUG, logger="cobald.runtime.tardis_sge_dask"):
            # every drone's removal at once, as at demand 0: one command for all of them
            await asyncio.gather(
                *(adapter.terminate_resource(attributes) for attributes in [*queued, unknown])
            )
        assert adapter.removal_commands == 1
        said = {
            record.getMessage().split(" job ")[1].split(")")[0]: record.getMessage().rsplit(
                ": ", 1
            )[1]
            for record in caplog.records
            if record.getMessage().endswith(("): removal requested", "): already gone"))
        }
        assert said == {
            **dict.fromkeys(job_ids, "removal requested"),
            system.unknown_job_id: "already gone",
        }
        bulk = [r.getMessage() for r in caplog.records if " of 5 jobs in " in r.getMessage()]
        assert len(bulk) == 1, bulk
        wait_until(lambda: not job_ids & set(system.alive(site)) or None, 60, "the jobs to be gone")
    finally:
        system.remove_all(site)


async def test_hostile_values_reach_the_batch_system_verbatim(system, tmp_path):
    site = unique_site(f"it{system.name}")
    canary = tmp_path / "canary"
    hostile = f"$(touch {canary});`touch {canary}`'\""
    adapter = batch_adapter(
        system,
        site,
        tmp_path,
        ExtraOptions=system.value_options(hostile),
        # inside the quoted export a directive line must stay a value, or the drone
        # becomes an array of three jobs
        JobEnvironment={"DRONE_NOTE": system.array_directive},
    )
    attributes = await submitted(adapter, site)
    try:
        assert system.recorded_value(attributes.remote_resource_uuid) == hostile
        assert not system.is_array(attributes.remote_resource_uuid), "an array job"
        assert not canary.exists()
    finally:
        system.remove_all(site)


async def test_a_line_break_never_reaches_the_batch_system(system, tmp_path):
    site = unique_site(f"it{system.name}")
    with pytest.raises(SiteConfigError, match="JobEnvironment.PILOT_TOKEN_FILE: contains"):
        batch_adapter(
            system,
            site,
            tmp_path,
            JobEnvironment={"PILOT_TOKEN_FILE": f"/t\n{system.array_directive}"},
        )
    assert system.alive(site) == {}


async def test_a_live_job_left_out_of_the_listing_is_never_declared_gone(system, tmp_path):
    site = unique_site(f"it{system.name}")
    hidden: set[str] = set()
    adapter = batch_adapter(system, site, tmp_path, hidden=hidden)
    adapter.site_settings = dataclasses.replace(adapter.site_settings, accounting_grace=0)
    attributes = await submitted(adapter, site)
    try:
        await status_until(adapter, attributes, ResourceStatus.Running)
        # a valid listing without the job, as a controller in trouble may give
        hidden.add(attributes.remote_resource_uuid)
        for _ in range(2):
            with pytest.raises(TardisResourceStatusUpdateFailed):
                await adapter.resource_status(attributes)
        assert attributes.remote_resource_uuid in system.alive(site)
        hidden.clear()
        system.remove_all(site)
        # once the batch system really has no such job, the drone goes
        await status_until(adapter, attributes, ResourceStatus.Deleted)
    finally:
        system.remove_all(site)


# --------------------------------------------------------------- daemon level
@dataclass
class DaemonSite:
    name: str
    daemon: CobaldDaemon
    demand: Path
    logs: Path


@pytest.fixture
def daemon_site(system, tmp_path):
    name = unique_site(f"d{system.name}")
    section = one_core_site_section(
        tmp_path, SIGNAL_PILOT, {**system.machine_type, **system.daemon_machine_type}
    )
    config, demand = unified_config(
        tmp_path, site=name, adapter=system.adapter, site_section=section
    )
    daemon = CobaldDaemon(config)
    yield DaemonSite(name, daemon, demand, tmp_path)
    daemon.stop()
    system.remove_all(name)


def all_started(system: BatchSystem, site: DaemonSite, jobs: dict[str, dict[str, str]]) -> bool:
    return all(
        pilot_started(system, site.logs, job["name"], job_id) for job_id, job in jobs.items()
    )


def count(system: BatchSystem, n: int, name: str, only_running: bool = False):
    def check():
        jobs = system.running(name) if only_running else system.alive(name)
        # wait_until wants a truthy answer: an empty dict is the success of n == 0
        return (jobs or True) if len(jobs) == n else None

    return check


def test_demand_brings_drones_up_replaces_lost_ones_and_removes_them_gracefully(
    system, daemon_site
):
    site, n = daemon_site, system.max_drones
    site.daemon.start()
    site.demand.write_text(str(n))
    jobs = wait_until(count(system, n, site.name, True), 120, f"{n} running drones", site.daemon)
    some_job = sorted(jobs)[0]
    wait_until(lambda: all_started(system, site, jobs), 90, "the pilots' start", site.daemon)

    # an admin removes one drone behind the daemon's back: noticed, and replaced
    system.remove(some_job)
    wait_until(
        lambda: some_job not in system.alive(site.name) and len(system.running(site.name)) == n,
        180,
        "the removed drone to be replaced",
        site.daemon,
    )
    assert re.search(system.removal_noticed.format(job=some_job), site.daemon.log())

    survivors = system.alive(site.name)
    # the warning is for pilots that run: wait for the replacement's, too
    wait_until(lambda: all_started(system, site, survivors), 90, "the pilots' start", site.daemon)
    site.demand.write_text("0")
    wait_until(count(system, 0, site.name), 180, "all drones removed at demand 0", site.daemon)
    # demand 0 stops drones gracefully: each pilot saw the warning and ended by itself
    for job_id, job in survivors.items():
        lines = lines_of(system.output(site.logs, job["name"], job_id))
        assert lines[-1] == "got USR2", (job_id, lines)
    assert site.daemon.alive


def test_restart_after_sigkill_finds_every_drone_and_submits_no_duplicates(system, daemon_site):
    site = daemon_site
    site.daemon.start()
    site.demand.write_text("2")
    before = set(
        wait_until(count(system, 2, site.name, True), 120, "2 running drones", site.daemon)
    )
    site.daemon.kill()

    site.daemon.start()
    wait_until(
        lambda: "restored 2 drone(s)" in site.daemon.log(), 60, "drones restored", site.daemon
    )
    # several heartbeats and factory cycles: a duplicate would have been submitted by now
    time.sleep(15)
    assert set(system.alive(site.name)) == before
    site.demand.write_text("0")
    wait_until(count(system, 0, site.name), 180, "restored drones removed", site.daemon)


def test_a_controller_outage_is_survived(system, daemon_site):
    site, n = daemon_site, system.max_drones
    site.daemon.start()
    site.demand.write_text(str(n - 1))
    before = set(
        wait_until(count(system, n - 1, site.name, True), 120, "running drones", site.daemon)
    )
    os.kill(int(system.controller_pidfile.read_text()), signal.SIGTERM)
    try:
        wait_until(
            lambda: subprocess.run(system.controller_probe, capture_output=True).returncode,
            30,
            "the controller to stop",
        )
        time.sleep(30)
        assert site.daemon.alive, site.daemon.log()[-3000:]
    finally:
        subprocess.run(
            ["bash", str(SERVICES / system.controller_up)],
            check=True,
            capture_output=True,
            env={**os.environ, **system.controller_up_env},
        )
    # the drones are still tracked: no replacement for jobs that never went away...
    time.sleep(10)
    assert set(system.alive(site.name)) == before
    # ...and the daemon acts again once the controller is back
    site.demand.write_text(str(n))
    wait_until(count(system, n, site.name), 120, "one more drone after the outage", site.daemon)
    assert "did not answer" in site.daemon.log() or "command failed" in site.daemon.log()
    site.demand.write_text("0")
    wait_until(count(system, 0, site.name), 180, "all drones removed at demand 0", site.daemon)
