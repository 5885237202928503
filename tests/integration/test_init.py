"""``tardis-sge-dask init`` -> ``check`` -> the real daemon, on the local Grid Engine and SLURM.

The first hour of a new admin (docs/admin-guide.md, "A new site in ten minutes"), on the
services as ``make services`` brings them up: Grid Engine with queue all.q and the
parallel environment smp, SLURM with partition debug.

1. ``init --batch-system B --overlay dask`` runs on this host (direct mode has the fewest
   placeholders: three scheduler addresses and the nodes' Python).
2. ``check`` names exactly those placeholders. They are filled as an admin would, by their
   question and nothing else: the addresses with the test's own Dask scheduler (on
   127.0.0.1; the execution host is this host), ``PILOT_PYTHON`` with this venv's Python.
   The pilot is the real one init wrote (``StartupCommand``): each drone runs a real dask
   worker that joins the scheduler.
3. ``check`` then reports nothing.
4. The real ``python -m cobald.daemon`` with the file brings one drone of every machine type
   init wrote into the running state (``r`` in ``qstat``, ``R`` in ``squeue``), in the queue
   or partition init named for it. Then the drones are removed by the daemon and nothing of
   the test is left in the queue.

Two edits besides the placeholders, both about the test's pace and none about the site:

* the ``!DaskDemandController`` is replaced by ``!StaticDemand`` reading a file. The
  controller opens drones only for work waiting at the scheduler, of the smallest type that
  fits, and keeps idle drones ``idle_time`` (300 s); the file opens one drone of every type
  (demand = the sum of their cores) and drops the demand to 0 at once.
* ``drone_heartbeat_interval`` goes from init's 60 s to 2 s: a drone takes one heartbeat per
  state, and going away takes five of them (drain, draining, shut down, shutting down, down).

Every other value (queue or partition, PE, cores, memory, walltime, executor, registry) is
used as init wrote it. Drones are named after the site, which is unique to the test run, so
only the test's own jobs are looked at and removed.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml

from tardis_sge_dask.configfile import load
from tardis_sge_dask.init import placeholders
from tests.helpers import sge as qstat
from tests.helpers import slurm as squeue
from tests.helpers.daemon import CobaldDaemon, unique_site, wait_until

pytestmark = pytest.mark.integration

#: placeholder (last key of its path) -> what the test fills in; anything else init asks
#: about is a new question this test has to learn to answer, and fails it
SCHEDULER_KEYS = {"address", "scheduler_address", "PILOT_DASK_SCHEDULER"}
PYTHON_KEYS = {"PILOT_PYTHON"}
HEARTBEAT = 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def scheduler(tmp_path):
    """The users' Dask scheduler, a child process on 127.0.0.1."""
    port = free_port()
    log = open(tmp_path / "scheduler.log", "w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dashboard-address",
            ":0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_until(listening, 30, "the Dask scheduler to listen")
        yield f"tcp://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def tardis_sge_dask(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tardis_sge_dask", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def fill_placeholders(path: Path, scheduler: str) -> set[str]:
    """Answer every placeholder by its name, as an admin edits the file; returns the keys."""
    text = path.read_text()
    answered = set()
    for key_path, question in placeholders.find(load(path)):
        key = re.split(r"[.\[]", key_path)[-1]
        if key in SCHEDULER_KEYS:
            answer = scheduler
        elif key in PYTHON_KEYS:
            answer = sys.executable
        else:
            raise AssertionError(f"init asks something new: {key_path}: {question}")
        written = "'" + placeholders.placeholder(question).replace("'", "''") + "'"
        assert written in text, f"{key_path}: {written} not found as written"
        text = text.replace(written, answer, 1)
        answered.add(key_path)
    path.write_text(text)
    return answered


def paced(path: Path, demand: Path) -> Path:
    """The filled file with the two pacing edits of the module's docstring, beside it."""
    text = path.read_text()
    start = text.index("  - !DaskDemandController")
    end = text.index("  - __type__: tardis_sge_dask.poolfactory.create_composite_pool")
    text = text[:start] + f"  - !StaticDemand {{file: {demand}, interval: 1}}\n" + text[end:]
    text, count = re.subn(
        r"^(\s+drone_heartbeat_interval:) 60$", rf"\1 {HEARTBEAT}", text, flags=re.M
    )
    assert count == 1, "init no longer writes drone_heartbeat_interval: 60"
    run = path.with_name("run.yaml")
    run.write_text(text)
    return run


def sge_running(prefix: str) -> dict[str, str]:
    """job id -> queue of the running jobs named with ``prefix``."""
    out = subprocess.run(
        ["qstat", "-u", "*", "-s", "r", "-xml"], capture_output=True, text=True, check=True
    ).stdout

    return {
        entry.findtext("JB_job_number"): (entry.findtext("queue_name") or "").split("@")[0]
        for entry in ElementTree.fromstring(out).iter("job_list")
        if (entry.findtext("JB_name") or "").startswith(prefix) and entry.findtext("state") == "r"
    }


def slurm_running(prefix: str) -> dict[str, str]:
    """job id -> partition of the running jobs named with ``prefix``."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "R", "-o", "%i|%P|%j"], capture_output=True, text=True, check=True
    ).stdout
    found = {}
    for line in out.splitlines():
        job_id, partition, name = line.split("|", 2)
        if name.startswith(prefix):
            found[job_id] = partition
    return found


BATCH_SYSTEMS = {
    # key of the machine type's queue, running jobs, jobs not ended, cleanup
    "sge": ("Queue", sge_running, qstat.jobs, qstat.delete),
    "slurm": ("Partition", slurm_running, squeue.alive, squeue.cancel),
}


def remove_sge_output(site: str) -> None:
    """Grid Engine writes a job's output to the owner's home without LogDirectory."""
    for left in Path.home().glob(f"{site}-*.[oe][0-9]*"):
        left.unlink(missing_ok=True)


@pytest.mark.parametrize("batch_system", sorted(BATCH_SYSTEMS))
def test_init_check_and_the_daemon_run_a_drone_of_every_machine_type(
    request, tmp_path, scheduler, batch_system
):
    request.getfixturevalue(batch_system)  # fails under CI=true when the service is missing
    queue_key, running, alive, cleanup = BATCH_SYSTEMS[batch_system]
    site = unique_site(f"init{batch_system}")
    config = tmp_path / "site.yaml"
    started = time.monotonic()

    made = tardis_sge_dask(
        "init",
        str(config),
        "--batch-system",
        batch_system,
        "--overlay",
        "dask",
        "--site",
        site,
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stdout + made.stderr

    before = tardis_sge_dask("check", str(config), cwd=tmp_path)
    assert before.returncode != 0
    named = {
        line.split(": ")[1]
        for line in before.stdout.splitlines()
        if "placeholder left by tardis-sge-dask init" in line
    }
    problems = [line for line in before.stdout.splitlines() if line.startswith(f"{config}: ")]
    assert len(problems) == len(named), before.stdout  # placeholders are all check names
    assert fill_placeholders(config, scheduler) == named

    after = tardis_sge_dask("check", str(config), cwd=tmp_path)
    assert after.returncode == 0, after.stdout + after.stderr
    assert after.stdout.strip() == f"{config}: no problems found", after.stdout

    document = yaml.safe_load(re.sub(r"!\w+", "", config.read_text()))
    section = document["tardis"][site]
    machine_types = section["MachineTypes"]
    assert machine_types, "init wrote no machine type"
    queues = {name: section["MachineTypeConfiguration"][name][queue_key] for name in machine_types}
    demand = sum(section["MachineMetaData"][name]["Cores"] for name in machine_types)

    demand_file = tmp_path / "demand"
    demand_file.write_text(str(demand))
    daemon = CobaldDaemon(paced(config, demand_file))
    try:
        daemon.start()

        def every_type_running() -> dict[str, str] | None:
            jobs = running(site)
            return jobs if sorted(jobs.values()) == sorted(queues.values()) else None

        # one drone per machine type: demand is their cores summed, each type's drone in the
        # queue or partition init wrote for it
        wait_until(every_type_running, 45, f"one running drone in each of {queues}", daemon)
        up = time.monotonic() - started

        demand_file.write_text("0")
        wait_until(lambda: not alive(site), 45, "the daemon to remove its drones", daemon)
        # the drones' workers retire, their pilots end, and the daemon lets each drone go
        wait_until(
            lambda: daemon.log().count("in DownState") >= len(machine_types),
            30,
            "the daemon to see every drone down",
            daemon,
        )
        log = daemon.log()
        assert "Traceback" not in log, log[-4000:]
        print(
            f"{batch_system}: drones running after {up:.1f} s, gone after "
            f"{time.monotonic() - started:.1f} s"
        )
    finally:
        daemon.stop()
        cleanup(site)
        if batch_system == "sge":
            remove_sge_output(site)
    assert not alive(site)
