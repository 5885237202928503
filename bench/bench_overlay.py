"""Time to first worker through the HTCondor overlay on the real Grid Engine, stage by stage.

    .venv/bin/python bench/bench_overlay.py [--workers 1 8] [--runs 1]

A physicist's ``OverlayCluster.scale(N)`` until N Dask workers are connected, on the idle
local Grid Engine, with every part real except the container runtime (the Apptainer
stand-in over bubblewrap, as in tests/integration/test_overlay.py, whose helpers this
reuses): the physicist's session (tests/integration/data/overlay_client.py, run as the
account ``physicist``), the overlay central manager (HTCondor 23.9 of
services/htcondor-up.sh), the real ``python -m cobald.daemon`` with ``!DaskDemandController``
reading ``!CondorQueueDemand``, drones of one core submitted over SSH as the pilot account,
the drone pilot starting the image's startd.

The time from ``scale()`` is split into stages, each taken from where it is recorded:

    worker jobs in the schedd   condor_q, polled (dask-jobqueue's condor_submit returned)
    demand seen                 the daemon log: the controller's "demand N cores" line
    drone submitted             the daemon log: the adapter's "submitted as sge job" line
    batch job running           qstat, polled (state r)
    condor_master started       the drone's MasterLog (the pilot has set up the container)
    startd's first update       the drone's StartLog: "Initial update sent to collector(s)"
    worker job claimed          the drone's StartLog: the schedd's claim "Request accepted"
    worker process started      the drone's StarterLog: "Create_Process succeeded"
    worker connected            the client's scheduler (a scheduler plugin's add_worker)

The drones' HTCondor logs (read from their scratch directories while they run) get
millisecond times through ``_CONDOR_ALL_DEBUG=D_SUB_SECOND`` in the pilot's environment.
The daemon runs before the clock starts (it has read the empty queue once), and
``scale()`` comes at a random point of the controller's and the pool's intervals, as a
physicist's would. Polls run in a helper thread every ``--poll`` seconds; a polled
time is when the answer came back, so it is late by at most one poll interval plus the
command's own time (the polled collector and schedd views are printed as a cross-check).
Each stage is shown for the first of the N and for the N-th, each step as the median over
the N chains (worker job -> the drone that ran it -> the worker it became).

References measured in the same run, as the project's other benchmarks do:

* raw ``qsub`` of a trivial job by the pilot account until ``qstat`` shows it running;
* raw ``condor_submit`` (as the physicist) of a trivial job that the drone startd accepts,
  until it runs on a drone that is already in the pool (the drones of the run, idle after
  the session closed; the daemon is stopped first, so no controller reacts to the job).

Holds ``flock /tmp/tsd-overlay.lock`` for the whole run (other end-to-end tests remove
every job of the physicist), removes the physicist's jobs before and after, and deletes
its own drones (``qdel``: the pilot drains the startd) before releasing the lock.
Durations are printed, never asserted: this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import json
import os
import queue
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tardis_sge_dask.pilot.startd_config import DASK_WORKER_START  # noqa: E402
from tests.helpers import overlay  # noqa: E402
from tests.helpers.daemon import CobaldDaemon, unique_site  # noqa: E402

LOCK = Path("/tmp/tsd-overlay.lock")
SSHD_KEY = Path(os.environ.get("SSHD_DIR", "/tmp/test-sshd")) / "id_ed25519"
SSH = {
    "host": "127.0.0.1",
    "port": 2222,
    "username": overlay.PILOT_USER,
    "client_keys": [str(SSHD_KEY)],
}
MACHINE_TYPE = {"Queue": "all.q", "Walltime": 3600, "MemoryResource": None}

DEMAND = re.compile(r"^(\S+ \S+) INFO \S+ demand (\d+) cores", re.M)
SUBMITTED = re.compile(r"^(\S+ \S+) .*drone (\S+) \([^)]*\): submitted as sge job (\d+)", re.M)

#: the stages in their order: key, label
STAGES = [
    ("queued", "worker jobs in the schedd"),
    ("demand", "demand seen by the controller"),
    ("submitted", "drone submitted (qsub returned)"),
    ("running", "batch job running (qstat r)"),
    ("startd", "startd's first update to the collector"),
    ("matched", "worker job claimed on the drone"),
    ("started", "worker process started"),
    ("connected", "worker connected"),
]
SOURCES = {
    "queued": "condor_q poll (or when counted)",
    "demand": "daemon log",
    "submitted": "daemon log",
    "running": "qstat poll (or MasterLog)",
    "startd": "drone StartLog",
    "matched": "drone StartLog",
    "started": "drone StarterLog",
    "connected": "scheduler plugin",
}

#: the steps of one chain (job -> drone -> worker), by the stage they end at
STEP_LABELS = {
    "queued": "scale() -> worker job in the schedd",
    "demand": "job in the schedd -> demand seen",
    "submitted": "demand seen -> drone submitted",
    "running": "drone submitted -> batch job running",
    "master": "running -> condor_master started (pilot)",
    "startd": "condor_master -> startd's first update",
    "matched": "startd's first update -> job claimed",
    "started": "claimed -> worker process started",
    "connected": "worker process -> worker connected",
}


# ------------------------------------------------------------------------- plumbing
def log_time(stamp: str) -> float:
    """Epoch of a logging asctime (local time, milliseconds)."""
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def run(argv: list[str], timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)


@contextlib.contextmanager
def overlay_lock() -> Iterator[None]:
    """The shared pool's lock, held for the whole benchmark."""
    with open(LOCK, "a") as handle:
        with contextlib.suppress(OSError):
            os.chmod(LOCK, 0o666)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for {LOCK} (another overlay run holds it) ...", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def preflight() -> None:
    problems = []
    if not overlay.pool_answers():
        problems.append("the overlay pool does not answer (services/htcondor-up.sh)")
    if not overlay.DRONE_TOKEN.exists():
        problems.append(f"no drone token at {overlay.DRONE_TOKEN}")
    if not (overlay.IMAGE / "usr" / "sbin" / "condor_master").exists():
        problems.append(f"no drone image at {overlay.IMAGE} (make image)")
    if not (overlay.STANDIN_BIN / "apptainer").exists():
        problems.append(f"no Apptainer stand-in in {overlay.STANDIN_BIN}")
    if run(["qstat", "-xml"]).returncode != 0:
        problems.append("Grid Engine does not answer qstat")
    if not SSHD_KEY.exists():
        problems.append(f"no key for the test sshd at {SSHD_KEY} (services/sshd-up.sh)")
    if problems:
        raise SystemExit("cannot run:\n  " + "\n  ".join(problems))


def sge_jobs(prefix: str) -> dict[str, tuple[str, str]]:
    """job id -> (name, state) of the jobs whose name starts with prefix."""
    out = run(["qstat", "-u", "*", "-xml"], check=True).stdout
    return {
        entry.findtext("JB_job_number") or "": (
            entry.findtext("JB_name") or "",
            entry.findtext("state") or "",
        )
        for entry in ElementTree.fromstring(out).iter("job_list")
        if (entry.findtext("JB_name") or "").startswith(prefix)
    }


def busy_elsewhere() -> str:
    """Batch jobs of others on this machine ('' when Grid Engine and SLURM are idle).

    Drone ads of other runs may stay in the collector after their drone was killed; they
    do not use the machine, and this run's workers cannot match them (see
    :func:`session_environment`), so they are not waited for.
    """
    parts = []
    jobs = sge_jobs("")
    if jobs:
        parts.append(f"{len(jobs)} Grid Engine job(s)")
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        slurm = run(["squeue", "-h", "-o", "%i"]).stdout.split()
        if slurm:
            parts.append(f"{len(slurm)} SLURM job(s)")
    return ", ".join(parts)


def wait_until_idle(timeout: float) -> str:
    """Wait for idle batch systems; returns what is still busy after ``timeout``."""
    deadline = time.monotonic() + timeout
    announced = False
    while (busy := busy_elsewhere()) and time.monotonic() < deadline:
        if not announced:
            print(f"waiting up to {timeout:.0f} s for idle batch systems: {busy}", flush=True)
            announced = True
        time.sleep(2)
    if busy:
        print(f"warning: measuring while busy: {busy}", file=sys.stderr)
    return busy


def wait(condition: Any, timeout: float, what: str, step: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# ------------------------------------------------------------------------ the watcher
@dataclass
class Seen:
    """First times (epoch) the watcher saw each thing."""

    queued: dict[str, float] = field(default_factory=dict)  # condor job id
    matched: dict[str, float] = field(default_factory=dict)  # condor job id
    job_name: dict[str, str] = field(default_factory=dict)  # condor job id -> batch name
    job_host: dict[str, str] = field(default_factory=dict)  # condor job id -> RemoteHost
    sge_running: dict[str, float] = field(default_factory=dict)  # drone uuid
    startd: dict[str, float] = field(default_factory=dict)  # drone uuid


class Watcher(threading.Thread):
    """Polls qstat, condor_status and condor_q and notes when each thing first shows up."""

    def __init__(self, site: str, interval: float, reschedule: bool = False):
        super().__init__(daemon=True)
        self.site, self.interval = site, interval
        #: ask the schedd for a negotiation cycle when a drone joins (--reschedule-on-join)
        self.reschedule = reschedule
        self.seen = Seen()
        self.polls = 0
        #: most jobs of others in Grid Engine / drones of others in the pool at one poll
        self.foreign_jobs = 0
        self.foreign_startds = 0
        self.foreign_condor_jobs = 0
        #: highest 1-minute load average seen
        self.load = os.getloadavg()[0]
        self.poll_seconds: list[float] = []
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(30)

    def run(self) -> None:
        while not self._halt.is_set():
            started = time.time()
            for step in (self._condor_q, self._qstat, self._condor_status):
                try:
                    step()
                except (OSError, subprocess.SubprocessError, ElementTree.ParseError, ValueError):
                    pass  # a failed poll is just a missed sample
            self.polls += 1
            self.poll_seconds.append(time.time() - started)
            self._halt.wait(self.interval)

    def _condor_q(self) -> None:
        out = run(
            [
                "condor_q",
                "-allusers",
                "-af",
                "BenchSite",
                "ClusterId",
                "ProcId",
                "JobStatus",
                "JobBatchName",
                "RemoteHost",
            ],
            check=True,
        ).stdout
        now = time.time()
        others = 0
        for line in out.splitlines():
            site, cluster, proc, status, name, host = line.split(maxsplit=5)
            if site != self.site:
                others += 1
                continue
            job = f"{cluster}.{proc}"
            self.seen.queued.setdefault(job, now)
            self.seen.job_name.setdefault(job, name)
            if status == "2":
                self.seen.matched.setdefault(job, now)
            if host != "undefined":
                self.seen.job_host.setdefault(job, host)
        self.foreign_condor_jobs = max(self.foreign_condor_jobs, others)
        self.load = max(self.load, os.getloadavg()[0])

    def _qstat(self) -> None:
        jobs = sge_jobs("")
        now = time.time()
        for name, state in jobs.values():
            if state == "r" and name.startswith(self.site):
                self.seen.sge_running.setdefault(name, now)
        self.foreign_jobs = max(
            self.foreign_jobs, sum(not name.startswith(self.site) for name, _ in jobs.values())
        )

    def _condor_status(self) -> None:
        out = run(
            [
                "condor_status",
                "-constraint",
                "TardisDroneUuid =!= undefined",
                "-af",
                "TardisDroneUuid",
            ],
            check=True,
        ).stdout
        now = time.time()
        joined = False
        for uuid in out.split():
            if uuid.startswith(self.site) and uuid not in self.seen.startd:
                self.seen.startd[uuid] = now
                joined = True
        if joined and self.reschedule:
            run(["condor_reschedule"], cwd="/tmp")
        self.foreign_startds = max(
            self.foreign_startds, sum(not uuid.startswith(self.site) for uuid in out.split())
        )


# -------------------------------------------------------------- the physicist, timed
def session_environment(site: str, jobqueue: dict[str, str]) -> dict[str, str]:
    """The physicist's dask config: worker jobs marked with, and bound to, this run's site.

    Through ``jobqueue.overlay.job-extra-directives`` as a physicist would set it, so a
    drone of another run still in the pool cannot take this run's workers; ``jobqueue``
    adds further ``jobqueue.overlay`` keys (``--jobqueue death-timeout=30``).
    """
    directives = {
        "Requirements": f'regexp("^{site}-", TARGET.TardisDroneUuid)',
        "MY.BenchSite": f'"{site}"',
    }
    environment = {"DASK_JOBQUEUE__OVERLAY__JOB_EXTRA_DIRECTIVES": repr(directives)}
    for name, value in jobqueue.items():
        environment[f"DASK_JOBQUEUE__OVERLAY__{name.upper().replace('-', '_')}"] = value
    return environment


class TimedSession(overlay.PhysicistSession):
    """The tests' physicist session, with overlay_client.py's --events timestamps."""

    def __init__(self, workers: int, site: str, jobqueue: dict[str, str], wait: float = 600):
        self.shared = overlay.owned_directory("tsd-physicist-", overlay.SUBMIT_USER)
        overlay.let_accounts_run(sys.executable)
        self.events_path = self.shared / "events.jsonl"
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.stderr_path = Path(tempfile.mkstemp(prefix="tsd-physicist-", suffix=".err")[1])
        self.process = subprocess.Popen(
            [
                "runuser",
                "-u",
                overlay.SUBMIT_USER,
                "--",
                sys.executable,
                str(overlay.CLIENT),
                "--workers",
                str(workers),
                "--shared-temp-directory",
                str(self.shared),
                "--wait",
                str(wait),
                "--events",
                str(self.events_path),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(self.stderr_path, "w"),
            text=True,
            cwd=self.shared,
            env={
                "PATH": os.environ["PATH"],
                "HOME": str(self.shared),
                "LANG": "C.UTF-8",
                **session_environment(site, jobqueue),
            },
        )
        threading.Thread(target=self._read, daemon=True).start()

    def timestamps(self) -> list[dict[str, Any]]:
        if not self.events_path.exists():
            return []
        return [json.loads(line) for line in self.events_path.read_text().splitlines() if line]


# ------------------------------------------------------------------------ references
def die_with_parent() -> None:
    """In a child before exec: SIGTERM when the benchmark's process ends, however."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class BenchDaemon(CobaldDaemon):
    """The tests' ``python -m cobald.daemon`` child, ended with the benchmark if it is killed."""

    def start(self) -> BenchDaemon:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cobald.daemon", str(self.config)],
            stdout=open(self.log_path, "a"),
            stderr=subprocess.STDOUT,
            cwd=self.config.parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=die_with_parent,
        )
        return self


def raw_qsub_to_running(prefix: str, poll: float) -> float | None:
    """A trivial job by the pilot account, from qsub to qstat's state r (None: not in 120 s)."""
    started = time.time()
    job = run(
        [
            "runuser",
            "-u",
            overlay.PILOT_USER,
            "--",
            "qsub",
            "-terse",
            "-b",
            "y",
            "-q",
            "all.q",
            "-N",
            prefix,
            "-o",
            "/dev/null",
            "-e",
            "/dev/null",
            "/bin/sleep",
            "60",
        ],
        check=True,
        cwd="/tmp",
    ).stdout.strip()
    try:
        while True:
            state = sge_jobs(prefix).get(job, ("", ""))[1]
            if state == "r":
                return time.time() - started
            if time.time() - started > 120:
                print(f"warning: raw job {job} not running after 120 s", file=sys.stderr)
                return None
            time.sleep(poll)
    finally:
        run(["qdel", job])


REFERENCE_SUBMIT = """\
universe = vanilla
executable = /bin/sleep
arguments = 1
transfer_executable = false
should_transfer_files = YES
when_to_transfer_output = ON_EXIT
request_cpus = 1
request_memory = 100
requirements = regexp("^{site}-", TARGET.TardisDroneUuid)
+DaskWorkerName = "bench-reference"
+DaskWorkerCores = 1
+BenchSite = "{site}"
batch_name = bench-reference
queue
"""


def raw_condor_submit_to_running(
    site: str, directory: Path, poll: float
) -> dict[str, float] | None:
    """A trivial job the drone startd accepts, from condor_submit to JobStatus 2.

    Submitted once the daemon is stopped, so no controller reacts to it, onto the run's
    drones: idle startds in the pool. None when no drone is idle any more.
    """
    try:
        wait(
            lambda: any(
                uuid.startswith(site) and slot["state"] == "Unclaimed"
                for uuid, slot in overlay.drone_startds().items()
            ),
            30,
            "an idle drone startd",
        )
    except TimeoutError:
        print("warning: no idle drone left for the condor_submit reference", file=sys.stderr)
        return None
    submit = directory / "reference.sub"
    submit.write_text(REFERENCE_SUBMIT.format(site=site))
    shutil.chown(submit, overlay.SUBMIT_USER, overlay.SUBMIT_USER)
    started = time.time()
    out = run(
        ["runuser", "-u", overlay.SUBMIT_USER, "--", "condor_submit", "-terse", str(submit)],
        check=True,
        cwd=directory,
    ).stdout
    job = out.split()[0]
    submitted = time.time()
    while True:
        status = run(["condor_q", job, "-af", "JobStatus"]).stdout.strip()
        if status == "2" or not status:  # not status: it ran and left between two polls
            running = time.time()
            break
        if time.time() - started > 120:
            raise TimeoutError(f"reference job {job} not running after 120 s")
        time.sleep(poll)
    wait(
        lambda: not run(["condor_q", job, "-af", "JobStatus"]).stdout.strip(),
        60,
        f"reference job {job} to leave the schedd",
    )
    return {"submit": submitted - started, "running": running - started}


# --------------------------------------------------------------------- one measured run
@dataclass
class Settings:
    controller_interval: float
    pool_interval: float
    heartbeat: float
    idle_time: float
    poll: float
    condor_knobs: dict[str, str]
    idle_wait: float = 300
    reschedule_on_join: bool = False
    jobqueue: dict[str, str] = field(default_factory=dict)
    site_keys: dict[str, str] = field(default_factory=dict)


def bench_config(directory: Path, site: str, logs: Path, workers: int, settings: Settings) -> Path:
    """tests.helpers.overlay's configuration with this run's intervals and knobs."""
    environment = {
        # sub-second times in the drones' HTCondor logs; changes nothing else
        "_CONDOR_ALL_DEBUG": "D_SUB_SECOND",
        # this run's drones take this run's jobs only, and leave soon if the run dies
        "PILOT_START_EXPRESSION": f'({DASK_WORKER_START}) && (TARGET.BenchSite =?= "{site}")',
        "PILOT_IDLE_TIMEOUT": 120,
    }
    environment.update({f"_CONDOR_{name}": value for name, value in settings.condor_knobs.items()})
    path = overlay.overlay_config(
        directory,
        site=site,
        adapter="SGE",
        machine_type=MACHINE_TYPE,
        ssh=SSH,
        known_hosts=overlay.pinned_known_hosts(directory),
        logs=logs,
        drones=workers,
        idle_time=settings.idle_time,
        environment=environment,
    )
    text = path.read_text()
    # the controller counts this run's jobs only (others' would be demand for our drones)
    source = "!CondorQueueDemand {executor: !TardisShellExecutor {}, output_format: long"
    assert text.count(source) == 1, text
    text = text.replace(
        source, source + f", constraint: '(IsDaskWorker =?= true) && (BenchSite =?= \"{site}\")'"
    )
    for pattern, value in (
        (r"(!DaskDemandController \{[^}]*?\binterval: )2\b", settings.controller_interval),
        (r"(create_composite_pool\n  interval: )2\b", settings.pool_interval),
        (r"(drone_heartbeat_interval: )2\b", settings.heartbeat),
    ):
        text, count = re.subn(pattern, lambda m, v=value: f"{m.group(1)}{v:g}", text)
        assert count == 1, (pattern, text)
    if settings.site_keys:
        anchor = "    accounting_grace: 10\n"
        assert text.count(anchor) == 1, text
        extra = "".join(f"    {key}: {value}\n" for key, value in settings.site_keys.items())
        text = text.replace(anchor, anchor + extra)
    path.write_text(text)
    return path


@dataclass
class Result:
    workers: int
    #: stage -> times since scale() of the first and the N-th
    first: dict[str, float | None]
    last: dict[str, float | None]
    #: step label -> median seconds over the chains
    steps: dict[str, float | None]
    #: how much later the polled views saw what the drones' logs recorded
    detail: dict[str, float | None]
    reference_condor: dict[str, float] | None
    raw: dict[str, Any]
    #: what else ran on Grid Engine / in the pool ('' = idle throughout)
    busy: str = ""
    #: highest 1-minute load average during the run (the machine has 2 cores)
    load: float = 0.0


def nth(values: list[float], n: int) -> float | None:
    ordered = sorted(values)
    return ordered[n - 1] if len(ordered) >= n else None


def measure(
    workers: int, settings: Settings, work: Path, reference: bool, keep: bool = False
) -> Result:
    site = unique_site("benchov")
    directory = work / f"n{workers}-{site}"
    directory.mkdir(parents=True)
    logs = overlay.owned_directory(f"tsd-{site}-logs-", overlay.PILOT_USER, 0o755)
    config = bench_config(directory, site, logs, workers, settings)
    overlay.remove_jobs()
    wait(lambda: not overlay.schedd_jobs(), 60, "an empty overlay schedd")
    busy = wait_until_idle(settings.idle_wait)
    daemon = BenchDaemon(config).start()
    session: TimedSession | None = None
    watcher = Watcher(site, settings.poll, settings.reschedule_on_join)
    recorded: dict[str, dict[str, Any]] = {}
    reference_condor = None
    events: list[dict[str, Any]] = []
    log = ""
    try:
        # the daemon is up and has read the (empty) queue once: production's steady state
        wait(
            lambda: "demand" in daemon.log().lower() or not daemon.alive,
            60,
            "the controller's first reading",
        )
        if not daemon.alive:
            raise SystemExit(f"the daemon died:\n{daemon.log()[-3000:]}")
        # a physicist's scale() does not know the controller's or the pool's phase: start
        # at a random point of their intervals, so repeated runs average over the phases
        time.sleep(random.uniform(0, max(settings.controller_interval, settings.pool_interval)))
        watcher.start()
        session = TimedSession(workers, site, settings.jobqueue)
        session.wait_for("workers", 600)
        # what HTCondor, Grid Engine and the pilot recorded, while it all still exists
        recorded = collect_records(site, logs, directory if keep else None)
        session.wait_for("result", 300)
        watcher.stop()
        events = session.timestamps()
        session.finish()
        wait(lambda: not overlay.schedd_jobs(), 120, "the worker jobs to leave the schedd")
        # without the daemon the drones stay as they are: idle startds in the pool
        log = daemon.log()
        daemon.stop()
        if reference:
            reference_condor = raw_condor_submit_to_running(site, session.shared, settings.poll)
    finally:
        if session is not None:
            with contextlib.suppress(OSError):
                shutil.copy(session.stderr_path, directory / "session.err")
                (directory / "session.events").write_text(
                    "".join(json.dumps(e) + "\n" for e in session.seen)
                )
        for step in (watcher.stop, session.kill if session else None, daemon.stop):
            if step is not None:
                try:
                    step()
                except Exception as err:  # cleanup goes on regardless
                    print(f"warning: cleanup step failed: {err!r}", file=sys.stderr)
        log = log or daemon.log()
        (directory / "daemon.log").write_text(log)
        cleanup(site)
        shutil.rmtree(logs, ignore_errors=True)
    result = analyse(workers, events, log, watcher, recorded, reference_condor)
    result.load = watcher.load
    during = [
        f"{count} {what}"
        for count, what in (
            (watcher.foreign_jobs, "other Grid Engine job(s)"),
            (watcher.foreign_startds, "drone ad(s) of others in the collector"),
            (watcher.foreign_condor_jobs, "other overlay job(s)"),
        )
        if count
    ]
    result.busy = "; ".join(
        filter(None, [busy and f"at start: {busy}", during and f"during: {', '.join(during)}"])
    )
    return result


#: what the drone's HTCondor logs record, by log file: key, pattern of the line
DRONE_LOG_LINES = {
    "MasterLog": [("master", r"\(CONDOR_MASTER\) STARTING UP")],
    "StartLog": [("update", r"Initial update sent to collector"), ("claimed", r"Request accepted")],
    "StarterLog.": [("exec", r"Create_Process succeeded")],
}
CONDOR_STAMP = re.compile(r"^(\d\d/\d\d/\d\d \d\d:\d\d:\d\d(?:\.\d+)?) ", re.M)


def condor_log_time(stamp: str) -> float:
    """Epoch of an HTCondor log time (local; milliseconds with D_SUB_SECOND)."""
    layout = "%m/%d/%y %H:%M:%S.%f" if "." in stamp else "%m/%d/%y %H:%M:%S"
    return datetime.strptime(stamp, layout).timestamp()


def drone_log_times(scratch: Path) -> dict[str, Any]:
    """First time of each DRONE_LOG_LINES event in one drone's HTCondor logs, and the
    id of the first job it ran (``job``)."""
    found: dict[str, Any] = {}
    directory = scratch / "condor" / "log"
    for prefix, events in DRONE_LOG_LINES.items():
        for path in sorted(directory.glob(f"{prefix}*")):
            if path.name.endswith(".testing"):
                continue  # the startd's capability probe, not a job
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace")
                for key, pattern in events:
                    match = re.search(CONDOR_STAMP.pattern + r".*" + pattern, text, re.M)
                    if match:
                        stamp = condor_log_time(match.group(1))
                        found[key] = min(found.get(key, stamp), stamp)
                job = re.search(r"Remote job ID is (\d+\.\d+)", text)
                if job and "job" not in found:
                    found["job"] = job.group(1)
    return found


def collect_records(site: str, logs: Path, keep: Path | None) -> dict[str, dict[str, Any]]:
    """Drone uuid -> the times its HTCondor daemons logged (read while the drone runs).

    The logs live in the drone's scratch directory, which the pilot removes when the
    drone ends; its path is in the pilot's output. With ``keep`` they are copied there.
    """
    records = {}
    for path in logs.glob(f"{site}*.o*"):
        uuid = path.name.split(".o")[0]
        text = path.read_text(errors="replace")
        scratch = re.search(r"scratch directory (\S+)", text)
        if keep is not None:
            copy_drone_logs(path, text, keep / uuid)
        if scratch:
            records[uuid] = drone_log_times(Path(scratch.group(1)))
    return records


def copy_drone_logs(pilot_log: Path, text: str, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(pilot_log, target / "pilot.out")
    scratch = re.search(r"scratch directory (\S+)", text)
    if scratch:
        for log in (Path(scratch.group(1)) / "condor" / "log").glob("*Log*"):
            with contextlib.suppress(OSError):
                shutil.copy(log, target / log.name)


def cleanup(site: str) -> None:
    """Our drones and the physicist's jobs gone before the lock is released."""
    overlay.remove_jobs()
    ids = list(sge_jobs(site))
    if ids:
        run(["qdel", *ids])  # -notify: the pilot drains its startd, then ends
    try:
        wait(lambda: not sge_jobs(site), 120, "the drones to leave Grid Engine", 1)
    except TimeoutError:
        ids = list(sge_jobs(site))
        run(["qdel", "-f", *ids])
        print(f"warning: drones {ids} had to be force-deleted", file=sys.stderr)
    with contextlib.suppress(TimeoutError):
        wait(
            lambda: not any(u.startswith(site) for u in overlay.drone_startds()),
            90,
            "the drone startds to leave the collector",
            1,
        )
    overlay.remove_jobs()


def analyse(
    workers: int,
    events: list[dict[str, Any]],
    log: str,
    watcher: Watcher,
    recorded: dict[str, dict[str, Any]],
    reference_condor: dict[str, float] | None,
) -> Result:
    scale = next(e["time"] for e in events if e["event"] == "scale")
    connected = {e["name"]: e["time"] for e in events if e["event"] == "worker"}
    demand = [(log_time(stamp), int(cores)) for stamp, cores in DEMAND.findall(log)]
    demand = [(t, cores) for t, cores in demand if t >= scale]
    submitted = {uuid: log_time(stamp) for stamp, uuid, _ in SUBMITTED.findall(log)}
    seen = watcher.seen

    def drone_time(key: str, uuid: str, polled: dict[str, float] | None = None) -> float | None:
        """The drone's logged time of ``key``, else the polled one."""
        value = recorded.get(uuid, {}).get(key)
        return value if value is not None else (polled or {}).get(uuid)

    # chains: worker job -> the drone it ran on -> the worker it became
    chains = []
    queue_order = sorted(seen.queued, key=lambda job: seen.queued[job])
    ran_on = {times["job"]: uuid for uuid, times in recorded.items() if "job" in times}
    for job in queue_order:
        host = seen.job_host.get(job, "")
        uuid = ran_on.get(job) or next(
            (u for u in submitted if f"@{u}@" in host or host.endswith(f"@{u}")), None
        )
        if uuid is None:
            continue
        rank = queue_order.index(job) + 1
        counted = [t for t, cores in demand if cores >= rank]
        # in the schedd no later than the controller counted it (the poll may lag)
        queued = min(seen.queued[job], *counted[:1])
        chains.append(
            {
                "job": job,
                "drone": uuid,
                "queued": queued,
                "demand": counted[0] if counted else None,
                "submitted": submitted.get(uuid),
                # running no later than its pilot started the master (the poll may lag)
                "running": min(
                    filter(None, (seen.sge_running.get(uuid), drone_time("master", uuid))),
                    default=None,
                ),
                "master": drone_time("master", uuid),
                "startd": drone_time("update", uuid, seen.startd),
                "matched": drone_time("claimed", uuid) or seen.matched.get(job),
                "started": drone_time("exec", uuid),
                "connected": connected.get(seen.job_name.get(job, "")),
            }
        )

    first: dict[str, float | None] = {}
    last: dict[str, float | None] = {}
    for key, _ in STAGES:
        if key == "demand":
            first[key] = demand[0][0] - scale if demand else None
            full = [t for t, cores in demand if cores >= workers]
            last[key] = full[0] - scale if full else None
            continue
        if key == "connected":
            values = list(connected.values())
        elif key == "queued":
            values = [c["queued"] for c in chains] or list(seen.queued.values())
        else:
            values = [c[key] for c in chains if c[key] is not None]
        first[key] = min(values) - scale if values else None
        at_n = nth(values, workers)
        last[key] = at_n - scale if at_n is not None else None

    steps: dict[str, float | None] = {}
    order = list(STEP_LABELS)
    for index, key in enumerate(order):
        before = order[index - 1] if index else None
        values = []
        for chain in chains:
            start = scale if before is None else chain[before]
            if start is not None and chain[key] is not None:
                values.append(chain[key] - start)
        steps[STEP_LABELS[key]] = median(values)

    polled_late = {
        "startd in the collector": median(
            [
                seen.startd[c["drone"]] - c["startd"]
                for c in chains
                if c["drone"] in seen.startd and c["startd"]
            ]
        ),
        "job matched": median(
            [
                seen.matched[c["job"]] - c["matched"]
                for c in chains
                if c["job"] in seen.matched and c["matched"]
            ]
        ),
    }
    return Result(
        workers=workers,
        first=first,
        last=last,
        steps=steps,
        detail=polled_late,
        reference_condor=reference_condor,
        raw={
            "scale": scale,
            "events": events,
            "demand": demand,
            "submitted": submitted,
            "seen": watcher.seen.__dict__,
            "chains": chains,
            "recorded": recorded,
            "polls": watcher.polls,
            "poll_median": median(watcher.poll_seconds),
        },
    )


# ----------------------------------------------------------------------------- report
def fmt(value: float | None, width: int = 7) -> str:
    if value is None:
        return f"{'-':>{width}}"
    return f"{value + 0.0 if abs(value) >= 0.05 else 0.0:{width}.1f}"


def report(results: list[Result], raw_qsub: list[float], settings: Settings) -> None:
    qsub = median(raw_qsub)
    condor = [r.reference_condor["running"] for r in results if r.reference_condor]
    condor_ref = median(condor)
    for workers in sorted({r.workers for r in results}):
        runs = [r for r in results if r.workers == workers]
        print(
            f"\nN = {workers}: cluster.scale({workers}) -> {workers} connected worker(s),"
            f" {len(runs)} run(s); seconds since scale()"
        )
        header = f"  {'stage':40s} {'first':>7s} {'N-th':>7s}"
        if len(runs) > 1:
            header += "   (per run: first / N-th)"
        print(header + "   source")
        for key, label in STAGES:
            first = median([r.first[key] for r in runs if r.first[key] is not None])
            last = median([r.last[key] for r in runs if r.last[key] is not None])
            line = f"  {label:40s} {fmt(first)} {fmt(last)}"
            if len(runs) > 1:
                line += "   " + " ".join(
                    f"{fmt(r.first[key], 0) + '/' + fmt(r.last[key], 0):>10s}" for r in runs
                )
            print(line + f"   {SOURCES[key]}")
        print(
            "  steps, median over the job -> drone -> worker chains"
            + (" and runs" if len(runs) > 1 else "")
        )
        for label in runs[0].steps:
            value = median([r.steps[label] for r in runs if r.steps[label] is not None])
            print(f"    {label:50s} {fmt(value)}")
        lags = []
        for label in runs[0].detail:
            value = median([r.detail[label] for r in runs if r.detail[label] is not None])
            if value is not None:
                lags.append(f"{label} {value:+.1f} s")
        if lags:
            print("  polled (condor_status, condor_q) later than logged: " + ", ".join(lags))
        total_first = median([r.first["connected"] for r in runs if r.first["connected"]])
        total_last = median([r.last["connected"] for r in runs if r.last["connected"]])
        goal = 15 if workers == 1 else 30
        shown = total_first if workers == 1 else total_last
        if shown is not None:
            verdict = "met" if shown <= goal else "missed"
            print(
                f"  goal: {'the first worker' if workers == 1 else f'{workers} workers'}"
                f" in <= {goal} s: {verdict} ({shown:.1f} s)"
            )
        if qsub and condor_ref and total_first:
            floor = qsub + condor_ref
            print(
                f"  first worker / (raw qsub->running + raw condor_submit->running)"
                f" = {total_first:.1f} / {floor:.1f} = {total_first / floor:.1f}x"
            )
        if total_last is not None and workers > 1 and total_first:
            print(f"  N-th / first worker = {total_last / total_first:.2f}")
        print(
            "  highest 1-min load average per run: "
            + ", ".join(f"{r.load:.1f}" for r in runs)
            + f" ({os.cpu_count()} cores)"
        )
        for index, result in enumerate(runs, 1):
            if result.busy:
                print(f"  run {index} was not alone: {result.busy}")
    print("\nreferences, same run (median)")
    print(
        f"  {'raw qsub -> qstat r (trivial job, pilot account)':68s} {fmt(qsub, 5)} s"
        f"   ({', '.join(f'{v:.1f}' for v in raw_qsub)})"
    )
    print(
        f"  {'raw condor_submit -> running on an idle drone (physicist)':68s}"
        f" {fmt(condor_ref, 5)} s   ({', '.join(f'{v:.1f}' for v in condor)})"
    )
    for key, reference, label in (
        ("running", qsub, "raw qsub -> running"),
        ("matched", condor_ref, "raw condor_submit -> running"),
    ):
        step = median(
            [r.steps[STEP_LABELS[key]] for r in results if r.steps[STEP_LABELS[key]] is not None]
        )
        if reference and step is not None:
            text = f"{STEP_LABELS[key]} / {label}"
            print(f"  {text:68s} {step / reference:5.2f}x")
    print(
        f"settings: controller interval {settings.controller_interval:g} s, pool interval"
        f" {settings.pool_interval:g} s, drone heartbeat {settings.heartbeat:g} s, poll"
        f" {settings.poll:g} s"
        + "".join(f", drone {k}={v}" for k, v in settings.condor_knobs.items())
        + "".join(f", jobqueue.overlay.{k}={v}" for k, v in settings.jobqueue.items())
        + "".join(f", site {k}={v}" for k, v in settings.site_keys.items())
        + (", condor_reschedule when a drone joins" if settings.reschedule_on_join else "")
    )
    print(
        f"pool: {central_manager_settings()}; Grid Engine schedule_interval"
        f" {sge_schedule_interval()}"
    )
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")


def central_manager_settings() -> str:
    names = [
        "NEGOTIATOR_INTERVAL",
        "NEGOTIATOR_CYCLE_DELAY",
        "SCHEDD_INTERVAL",
        "NEGOTIATOR_MIN_INTERVAL",
    ]
    out = run(["condor_config_val", *names]).stdout.split()
    return ", ".join(f"{n} {v}" for n, v in zip(names, out, strict=False))


def sge_schedule_interval() -> str:
    for line in run(["qconf", "-ssconf"]).stdout.splitlines():
        if line.startswith("schedule_interval"):
            return line.split()[1]
    return "?"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n")[3:]),
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1, 8],
        help="N of each measurement (drones of one core; default: 1 8)",
    )
    parser.add_argument("--runs", type=int, default=1, help="runs per N (default 1)")
    parser.add_argument(
        "--controller-interval",
        type=float,
        default=2,
        help="!DaskDemandController interval (s; default 2)",
    )
    parser.add_argument(
        "--pool-interval", type=float, default=2, help="the pool factory's interval (s; default 2)"
    )
    parser.add_argument(
        "--heartbeat", type=float, default=2, help="TARDIS drone_heartbeat_interval (s; default 2)"
    )
    parser.add_argument(
        "--idle-time",
        type=float,
        default=60,
        help="controller idle_time (s): idle drones stay for the reference",
    )
    parser.add_argument(
        "--poll",
        type=float,
        default=0.2,
        help="poll interval of qstat / condor_status / condor_q (s)",
    )
    parser.add_argument(
        "--reference-runs", type=int, default=3, help="raw qsub -> running measurements (default 3)"
    )
    parser.add_argument(
        "--condor-knob",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an HTCondor setting for the drones' daemons, passed to the"
        " pilot as _CONDOR_NAME (repeatable; for trying startd settings)",
    )
    parser.add_argument(
        "--site-key",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a key of the site's section, e.g. bulk_delay=0.1 (repeatable)",
    )
    parser.add_argument(
        "--jobqueue",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a jobqueue.overlay setting of the physicist's session, e.g."
        " death-timeout=30 (repeatable; as DASK_JOBQUEUE__OVERLAY__KEY)",
    )
    parser.add_argument(
        "--idle-wait",
        type=float,
        default=300,
        help="seconds to wait for idle Grid Engine and SLURM before each"
        " measurement (then it measures anyway and says so)",
    )
    parser.add_argument(
        "--reschedule-on-join",
        action="store_true",
        help="run condor_reschedule when a drone's startd shows up in the"
        " collector (a negotiation cycle at once instead of at the next"
        " NEGOTIATOR_INTERVAL; what the daemon could do)",
    )
    parser.add_argument("--json", type=Path, help="write every timestamp to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    knobs: dict[str, str] = {}
    jobqueue: dict[str, str] = {}
    site_keys: dict[str, str] = {}
    for option, items, into in (
        ("--condor-knob", args.condor_knob, knobs),
        ("--jobqueue", args.jobqueue, jobqueue),
        ("--site-key", args.site_key, site_keys),
    ):
        for item in items:
            name, sep, value = item.partition("=")
            if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name):
                parser.error(f"{option} {item!r} is not NAME=VALUE")
            into[name] = value
    settings = Settings(
        controller_interval=args.controller_interval,
        pool_interval=args.pool_interval,
        heartbeat=args.heartbeat,
        idle_time=args.idle_time,
        poll=args.poll,
        condor_knobs=knobs,
        idle_wait=args.idle_wait,
        reschedule_on_join=args.reschedule_on_join,
        jobqueue=jobqueue,
        site_keys=site_keys,
    )

    def terminated(signum: int, _frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}; cleaning up")

    # SIGTERM/SIGHUP run the clean-up of the current measurement (drones, jobs, daemon)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, terminated)
    work = Path(tempfile.mkdtemp(prefix="bench-overlay-"))
    results: list[Result] = []
    failures: list[str] = []
    raw_qsub: list[float] = []
    interrupted: SystemExit | None = None
    with overlay_lock():
        preflight()
        try:
            for index in range(args.reference_runs):
                seconds = raw_qsub_to_running(f"benchovraw{index}", args.poll)
                if seconds is not None:
                    raw_qsub.append(seconds)
            for run_index in range(args.runs):
                for workers in args.workers:
                    print(f"run {run_index + 1}/{args.runs}: N = {workers} ...", flush=True)
                    try:
                        results.append(
                            measure(workers, settings, work, reference=True, keep=args.keep)
                        )
                    except (AssertionError, TimeoutError) as err:
                        first_line = str(err).splitlines()[0]
                        failures.append(f"run {run_index + 1}, N = {workers}: {first_line}")
                        print(f"  failed: {first_line} (logs in {work})", flush=True)
                        args.keep = True
        except SystemExit as stop:  # a signal: the current measurement is cleaned up
            interrupted = stop
            failures.append(f"interrupted: {stop}")
    report(results, raw_qsub, settings)
    for failure in failures:
        print(f"FAILED {failure}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"raw_qsub": raw_qsub, "results": [r.__dict__ for r in results]},
                indent=1,
                default=str,
            )
        )
    if args.keep:
        print(f"work directory: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    if interrupted is not None:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
