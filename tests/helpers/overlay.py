"""The HTCondor overlay as the tests meet it: the central manager of services/htcondor-up.sh,
the drone test image of containers/test-image, and a physicist's session.

Everything here is real except the container runtime: the drone pilot finds the Apptainer
stand-in (bubblewrap over the directory image, containers/test-image/apptainer) first on
its PATH. HTCondor (23.9, Debian 13's packages), Grid Engine, SLURM, sshd, Dask,
dask-jobqueue and the COBalD daemon are the real programs.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from tests.helpers.daemon import one_core_site, unified_config

STATE = Path(os.environ.get("HTCONDOR_STATE", "/var/lib/tardis-sge-dask/htcondor"))
DRONE_TOKEN = STATE / "tokens" / "drone.token"
#: the account drones run as (the factory's SSH login), and the one a physicist uses:
#: HTCondor refuses jobs owned by root, as any real schedd does
PILOT_USER = "tardis"
SUBMIT_USER = "physicist"
IMAGE = Path(os.environ.get("TSD_TEST_IMAGE", "/var/cache/tardis-sge-dask/drone-image"))
STANDIN_BIN = Path(os.environ.get("TSD_STANDIN_BIN", "/var/cache/tardis-sge-dask/standin-bin"))
CLIENT = Path(__file__).parent.parent / "integration" / "data" / "overlay_client.py"


def condor(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout


def pool_answers() -> bool:
    try:
        return bool(condor("condor_status", "-collector", "-af", "Name").strip())
    except (OSError, subprocess.SubprocessError):
        return False


def schedd_jobs(owner: str = SUBMIT_USER) -> list[dict[str, Any]]:
    """The owner's jobs in the overlay schedd: id, status (1 idle, 2 running, 5 held)."""
    out = condor("condor_q", owner, "-af", "ClusterId", "ProcId", "JobStatus", "RemoteHost")
    jobs = []
    for line in out.splitlines():
        cluster, proc, status, host = line.split(maxsplit=3)
        jobs.append({"id": f"{cluster}.{proc}", "status": int(status), "host": host})
    return jobs


def remove_jobs(owner: str = SUBMIT_USER) -> None:
    """condor_rm of every job of ``owner``; running ones leave once their shadow has."""
    for argv in (["condor_rm", owner], ["condor_rm", "-forcex", owner]):
        subprocess.run(argv, capture_output=True, timeout=60)


def drone_startds() -> dict[str, dict[str, str]]:
    """Drone uuid -> its partitionable slot's state, as the collector has it."""
    out = condor(
        "condor_status",
        "-constraint",
        "TardisDroneUuid =!= undefined",
        "-af",
        "TardisDroneUuid",
        "Name",
        "State",
        "Activity",
    )
    found = {}
    for line in out.splitlines():
        uuid, name, state, activity = line.split()
        found.setdefault(uuid, {"slot": name, "state": state, "activity": activity})
    return found


def account_processes(user: str, *names: str, drone_prefix: str = "") -> list[str]:
    """Processes of ``user`` whose command is one of ``names`` (stray drone parts); with
    ``drone_prefix``, only those of drones whose uuid starts with it (their environment
    carries ``TardisDroneUuid``), so other runs' drones do not count."""
    out = subprocess.run(
        ["ps", "-u", user, "-o", "pid=,comm="], capture_output=True, text=True
    ).stdout
    found = []
    for line in out.splitlines():
        pid, _, command = line.strip().partition(" ")
        if command.strip() not in names:
            continue
        if drone_prefix:
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue  # ended meanwhile
            if f"TardisDroneUuid={drone_prefix}".encode() not in b"\0".join(environ):
                continue
        found.append(line.strip())
    return found


def owned_directory(prefix: str, owner: str, mode: int = 0o700) -> Path:
    """A directory under /tmp that one account owns (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    shutil.chown(path, owner, owner)
    path.chmod(mode)
    return path


def let_accounts_run(python: str) -> None:
    """Let other accounts reach the project's interpreter and venv.

    pyenv keeps the interpreter below /root (mode 700 on Debian). The physicist's session
    runs the project's venv as on a shared login node, so the directories on the way get
    the traverse bit (not the read bit) for others.
    """
    for target in {Path(python).resolve(), Path(sys.prefix).resolve()}:
        for directory in [*reversed(target.parents)]:
            mode = directory.stat().st_mode
            if not mode & stat.S_IXOTH:
                directory.chmod(mode | stat.S_IXOTH)


def overlay_config(
    directory: Path,
    *,
    site: str,
    adapter: str,
    machine_type: dict[str, Any],
    ssh: dict[str, Any],
    known_hosts: Path,
    logs: Path,
    drones: int,
    idle_time: float,
    environment: dict[str, Any] | None = None,
) -> Path:
    """The unified config an admin writes for the overlay, scaled down to this host.

    Drones of one core run as the pilot account (the site's executor logs in over SSH),
    start the image through the runtime on their PATH and join the overlay with the drone
    token; the controller reads the overlay schedd, TARDIS's HTCondor adapter watches and
    drains the drones through the real condor_status / condor_drain.
    """
    path, _ = unified_config(
        directory,
        site=site,
        adapter=adapter,
        quota=drones,
        interval=2,
        heartbeat=2,
        batch_system={
            "adapter": "HTCondorOverlay",
            "max_age": 0.05,
            "ratios": {
                "cpu_ratio": "Real(TotalSlotCpus-Cpus)/TotalSlotCpus",
                "memory_ratio": "Real(TotalSlotMemory-Memory)/TotalSlotMemory",
            },
        },
        site_section=one_core_site(
            {
                "PILOT_MODE": "htcondor",
                "PILOT_COLLECTOR": "127.0.0.1:9618",
                "PILOT_TOKEN_FILE": str(DRONE_TOKEN),
                "PILOT_CONTAINER": str(IMAGE),
                "PILOT_CONTAINER_RUNTIME": "auto",
                # the Apptainer stand-in first: the pilot's normal `auto` search finds it
                "PATH": f"{STANDIN_BIN}:/usr/local/bin:/usr/bin:/bin",
                "PILOT_CHECK_GFAL2": "false",
                "PILOT_IDLE_TIMEOUT": 300,
                "PILOT_RETIRE_TIMEOUT": 20,
                **(environment or {}),
            },
            logs,
            machine_type,
        ),
    )
    text = path.read_text()
    executor = yaml.safe_dump(
        {**ssh, "known_hosts": str(known_hosts)}, default_flow_style=True
    ).strip()
    # the site is reached over SSH as the pilot account; condor tools run as root here
    text = text.replace(
        f"  {site}:\n    executor: !TardisShellExecutor {{}}",
        f"  {site}:\n    executor: !TardisSSHExecutor {executor}",
    )
    text = text.replace(
        "  BatchSystem:\n", "  BatchSystem:\n    executor: !TardisShellExecutor {}\n"
    )
    controller = {
        "interval": 2,
        "idle_time": idle_time,
        "maximum": drones,
        "machine_types": {"onecore": {"Cores": 1, "Memory": 2, "GPUs": 0}},
    }
    source = "!CondorQueueDemand {executor: !TardisShellExecutor {}, output_format: long}"
    text = text.replace(
        text[
            text.index("- !StaticDemand {") : text.index("}", text.index("- !StaticDemand {")) + 1
        ],
        "- !DaskDemandController "
        + yaml.safe_dump({**controller, "source": "__SOURCE__"}, default_flow_style=True)
        .strip()
        .replace("__SOURCE__", source),
    )
    assert "!TardisSSHExecutor" in text and "!CondorQueueDemand" in text, text
    path.write_text(text)
    return path


def pinned_known_hosts(directory: Path) -> Path:
    key = Path("/etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
    path = directory / "known_hosts"
    path.write_text(f"[127.0.0.1]:2222 {key[0]} {key[1]}\n")
    return path


class PhysicistSession:
    """tests/integration/data/overlay_client.py run as the physicist account."""

    def __init__(
        self, workers: int, wait: float = 600, site: str | None = None, pin_site: str | None = None
    ):
        self.shared = owned_directory("tsd-physicist-", SUBMIT_USER)
        let_accounts_run(sys.executable)
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.stderr_path = Path(tempfile.mkstemp(prefix="tsd-physicist-", suffix=".err")[1])
        self.process = subprocess.Popen(
            [
                "runuser",
                "-u",
                SUBMIT_USER,
                "--",
                sys.executable,
                str(CLIENT),
                "--workers",
                str(workers),
                "--shared-temp-directory",
                str(self.shared),
                "--wait",
                str(wait),
                *(["--site", site] if site else []),
                *(["--pin-site", pin_site] if pin_site else []),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(self.stderr_path, "w"),
            text=True,
            cwd=self.shared,
            env={"PATH": os.environ["PATH"], "HOME": str(self.shared), "LANG": "C.UTF-8"},
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                self.events.put(json.loads(line))
            except json.JSONDecodeError:
                self.events.put({"event": "output", "line": line})

    def wait_for(self, event: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got = self.events.get(timeout=1)
            except queue.Empty:
                if self.process.poll() is not None and self.events.empty():
                    break
                continue
            self.seen.append(got)
            if got.get("event") == event:
                return got
        raise AssertionError(
            f"the physicist's session never reported {event!r}; it said {self.seen}\n"
            f"stderr:\n{self.stderr()[-4000:]}"
        )

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def send(self, command: str) -> None:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def finish(self, timeout: float = 120) -> None:
        if self.process.poll() is None:
            self.send("close")
        self.wait_for("closed", timeout)
        self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        shutil.rmtree(self.shared, ignore_errors=True)
