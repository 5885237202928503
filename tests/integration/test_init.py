"""``tardis-sge-dask init`` -> ``check`` -> the real daemon, on a multi-queue Grid Engine and
a multi-partition SLURM, with init run on this host and over SSH.

The first hour of a new admin (docs/admin-guide.md, "A new site in ten minutes"), on the
local services given the shape of a real site by ``services/site-shapes.sh`` for this
module only (the fixture ``shaped_site`` takes the shape away afterwards, also when a test
fails, leaving the services as ``services/up.sh`` made them):

* Grid Engine: all.q (no limits, PE smp), short.q (h_rt 30 min, 4 slots, h_vmem 4G per
  slot, pe_list with a ``$round_robin`` PE before the ``$pe_slots`` one), mpi.q (only the
  ``$round_robin`` PE), staff.q (an access list without the test's users); h_vmem is
  consumable per slot with 48G on the host.
* SLURM: debug (no limits), short (MaxTime 30 min, 4 CPUs, 4 GB per node), gpu (4 h),
  restricted (AllowAccounts of an account nobody here has); gres/gpu:4 on the node.

1. ``init --batch-system B --overlay dask`` runs on this host as root, or over the test
   sshd as the unprivileged ``tardis`` (``--ssh tardis@127.0.0.1``, its key, its pinned host
   key): the probes run through the executor the daemon will use, and the file keeps it.
   Direct mode has the fewest placeholders: three scheduler addresses and the nodes' Python.
2. The file holds one machine type for each queue or partition the user may use, and none
   for the forbidden one; the richer site's choices are asserted where a user would notice
   them (the ``$pe_slots`` PE, the per-slot h_vmem, the queue's h_rt, the GPU request).
3. ``check`` names exactly the placeholders. They are filled as an admin would, by their
   question and nothing else: the addresses with the test's own Dask scheduler (on
   127.0.0.1; the execution host is this host), ``PILOT_PYTHON`` with this venv's Python.
   The pilot is the real one init wrote (``StartupCommand``): each drone runs a real dask
   worker that joins the scheduler. ``check`` then reports nothing.
4. The real ``python -m cobald.daemon`` with the file brings one drone of every machine type
   init wrote into the running state (``r`` in ``qstat``, ``R`` in ``squeue``) at the same
   time, each in the queue or partition init named for it: none waits for a reason the file
   could have avoided. Then the daemon removes the drones and nothing of the test is left.

Two edits besides the placeholders, both about the test's pace and none about the site:

* the ``!DaskDemandController`` is replaced by ``EveryTypeDemand`` (tests/helpers) reading a
  file. The controller opens drones only for work waiting at the scheduler, of the smallest
  type that fits, and keeps idle drones ``idle_time`` (300 s); the file asks the site pool
  for one drone of every type at once (a plan, as the controller hands over), then for none.
  On SLURM the drone of ``short`` is asked for first, alone, and the others once it runs:
  SLURM 24.11 checks short's MaxCPUsPerNode against every CPU allocated on the node, so its
  drone cannot start next to another job (services/site-shapes.sh has the measurement).
* ``drone_heartbeat_interval`` goes from init's 60 s to 2 s: a drone takes one heartbeat per
  state, and going away takes five of them (drain, draining, shut down, shutting down, down).

Every other value (queue or partition, PE, cores, memory, walltime, executor, registry) is
used as init wrote it. Drones are named after the site, which is unique to the test run, so
only the test's own jobs are looked at and removed.
"""

from __future__ import annotations

import json
import pwd
import re
import shutil
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
from tests.helpers.overlay import let_accounts_run

pytestmark = pytest.mark.integration

#: placeholder (last key of its path) -> what the test fills in; anything else init asks
#: about is a new question this test has to learn to answer, and fails it
SCHEDULER_KEYS = {"address", "scheduler_address", "PILOT_DASK_SCHEDULER"}
PYTHON_KEYS = {"PILOT_PYTHON"}
HEARTBEAT = 2
REPOSITORY = Path(__file__).parents[2]
SHAPES = REPOSITORY / "services" / "site-shapes.sh"
#: the queues or partitions services/site-shapes.sh gives, and the one the users may not use
USABLE = {
    "sge": ["all.q", "mpi.q", "short.q"],
    "slurm": ["debug", "gpu", "short"],
}
FORBIDDEN = {"sge": "staff.q", "slurm": "restricted"}
#: queues or partitions whose drone is asked for before the others (see the docstring)
FIRST = {"sge": [], "slurm": ["short"]}


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


def paced(path: Path, demand: Path, site: str, cores: dict[str, int]) -> Path:
    """The filled file with the two pacing edits of the module's docstring, beside it."""
    text = path.read_text()
    start = text.index("  - !DaskDemandController")
    end = text.index("  - __type__: tardis_sge_dask.poolfactory.create_composite_pool")
    controller = (
        "  - __type__: tests.helpers.every_type_demand.EveryTypeDemand\n"
        f"    file: {demand}\n    site: {site}\n    machine_types: {json.dumps(cores)}\n"
    )
    text = text[:start] + controller + text[end:]
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


def move_output(home: Path, site: str, job_ids: set[str], keep: Path) -> None:
    """Without LogDirectory Grid Engine writes a job's output to the owner's home, and
    sbatch to its working directory (over SSH: the home); kept in ``keep`` for a look."""
    keep.mkdir(exist_ok=True)
    left = [
        *home.glob(f"{site}-*.[oe][0-9]*"),
        *(home / f"slurm-{job_id}.out" for job_id in job_ids),
    ]
    for path in left:
        if path.exists():
            shutil.move(path, keep / path.name)


@pytest.fixture(scope="module", params=sorted(BATCH_SYSTEMS))
def shaped_site(request):
    """The batch system in the shape of a real site (services/site-shapes.sh), for this
    module's tests only; taken away afterwards, whatever happened."""
    batch_system = request.param
    request.getfixturevalue(batch_system)  # fails under CI=true when the service is missing

    def shapes(action: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(SHAPES), action, batch_system],
            capture_output=True,
            text=True,
            timeout=300,
        )

    try:
        up = shapes("up")
        assert up.returncode == 0, up.stdout + up.stderr
        yield batch_system
    finally:
        down = shapes("down")
        assert down.returncode == 0, down.stdout + down.stderr


def pinned_known_hosts(directory: Path) -> Path:
    key = Path("/etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
    path = directory / "known_hosts"
    path.write_text(f"[127.0.0.1]:2222 {key[0]} {key[1]}\n")
    return path


def init_options(request, where: str, tmp_path: Path) -> tuple[list[str], Path]:
    """init's options to reach the site, and the home the drones' user has there."""
    if where == "local":
        return [], Path.home()
    sshd = request.getfixturevalue("sshd")
    # the drones run as the SSH login, and the filled-in PILOT_PYTHON is this venv's
    let_accounts_run(sys.executable)
    options = [
        "--ssh",
        f"{sshd['username']}@{sshd['host']}",
        "--ssh-port",
        str(sshd["port"]),
        "--ssh-key",
        sshd["client_keys"][0],
        "--known-hosts",
        str(pinned_known_hosts(tmp_path)),
    ]
    return options, Path(pwd.getpwnam(sshd["username"]).pw_dir)


def assert_the_richer_site_is_read(batch_system: str, section: dict, queues: dict) -> None:
    """The choices of init on the shaped site that a user of the drones would notice."""
    by_queue = {queue: name for name, queue in queues.items()}
    config = section["MachineTypeConfiguration"]
    meta = section["MachineMetaData"]
    if batch_system == "sge":
        short, mpi = config[by_queue["short.q"]], config[by_queue["mpi.q"]]
        # the $pe_slots PE, though pe_list names the $round_robin one first
        assert short["ParallelEnvironment"] == "smp"
        assert short["MemoryResource"] == "h_vmem"  # consumable per slot
        assert short["Walltime"] == 1800  # the queue's h_rt
        # 4G per slot is the queue's h_vmem limit
        cores = meta[by_queue["short.q"]]["Cores"]
        assert cores > 1 and meta[by_queue["short.q"]]["Memory"] <= 4 * cores
        # only $round_robin: all cores on one host cannot be asked for, so one-core drones
        assert meta[by_queue["mpi.q"]]["Cores"] == 1 and "ParallelEnvironment" not in mpi
    else:
        for name in queues:
            assert config[name]["ExtraOptions"] == ["--gres=gpu:1"]  # every node has gres/gpu
        assert config[by_queue["short"]]["Walltime"] == 1800  # MaxTime=30
        assert meta[by_queue["short"]]["Cores"] == 4  # MaxCPUsPerNode=4
        assert meta[by_queue["short"]]["Memory"] <= 4  # MaxMemPerNode=4096


@pytest.mark.parametrize("where", ["local", "ssh"])
def test_init_check_and_the_daemon_run_a_drone_of_every_usable_queue(
    request, monkeypatch, tmp_path, scheduler, shaped_site, where
):
    batch_system = shaped_site
    queue_key, running, alive, cleanup = BATCH_SYSTEMS[batch_system]
    site = unique_site(f"init{batch_system}{where}")
    options, home = init_options(request, where, tmp_path)
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
        *options,
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    forbidden = FORBIDDEN[batch_system]
    assert f"left out {forbidden}: " in made.stdout, made.stdout

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
    # every queue or partition the user may use, and not the forbidden one
    assert sorted(queues.values()) == USABLE[batch_system], made.stdout
    assert_the_richer_site_is_read(batch_system, section, queues)
    if where == "ssh":
        assert document["tardis"][site]["executor"]["username"] == "tardis"
    cores = {name: section["MachineMetaData"][name]["Cores"] for name in machine_types}

    demand_file = tmp_path / "demand"
    first = [name for name, queue in queues.items() if queue in FIRST[batch_system]]
    demand_file.write_text(",".join(first) or "1")
    # the daemon imports the test's controller from the repository
    monkeypatch.setenv("PYTHONPATH", str(REPOSITORY))
    daemon = CobaldDaemon(paced(config, demand_file, site, cores))
    seen: set[str] = set()
    try:
        daemon.start()

        def every_type_running() -> dict[str, str] | None:
            jobs = running(site)
            seen.update(jobs)
            return jobs if sorted(jobs.values()) == sorted(queues.values()) else None

        if first:
            wanted = sorted(queues[name] for name in first)
            wait_until(
                lambda: sorted(running(site).values()) == wanted,
                45,
                f"the first drones running in {wanted}",
                daemon,
            )
            demand_file.write_text("1")
        # one drone per machine type at the same time, each in the queue or partition init
        # wrote for it
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
            f"{batch_system} ({where}): drones running after {up:.1f} s, gone after "
            f"{time.monotonic() - started:.1f} s"
        )
    finally:
        daemon.stop()
        cleanup(site)
        move_output(home, site, seen, tmp_path / "drone-output")
    assert not alive(site)
