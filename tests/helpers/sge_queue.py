"""A Grid Engine queue made for one run and disabled, and a log of the daemon's commands.

Drones submitted to a disabled queue stay queued (``qw``) for as long as the run needs
them, without a node and without touching ``all.q``; :func:`disabled_queue` removes the
queue and every job of the run at the end, also on failure, so no other test sees them.
"""

from __future__ import annotations

import shlex
import subprocess
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: the Grid Engine commands the shims log
COMMANDS = ("qsub", "qstat", "qdel", "qacct")


def run(*argv: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, **kwargs)


def jobs_named(prefix: str) -> list[str]:
    """Ids of every job (any user) whose name starts with ``prefix``."""
    out = run("qstat", "-u", "*", "-xml").stdout
    return [
        entry.findtext("JB_job_number") or ""
        for entry in ElementTree.fromstring(out).iter("job_list")
        if (entry.findtext("JB_name") or "").startswith(prefix)
    ]


def delete_jobs(job_ids: list[str]) -> None:
    for start in range(0, len(job_ids), 500):
        run("qdel", *job_ids[start : start + 500], check=False)


@contextmanager
def disabled_queue(name: str, directory: Path, job_prefix: str) -> Iterator[str]:
    """A copy of all.q named ``name``, disabled from its creation; removed at the end
    with every job whose name starts with ``job_prefix``."""
    lines = []
    for line in run("qconf", "-sq", "all.q").stdout.splitlines():
        key = line.split(None, 1)[0] if line.strip() else ""
        if key == "qname":
            line = f"qname {name}"
        elif key == "initial_state":
            line = "initial_state disabled"
        lines.append(line)
    spec = directory / f"{name}.conf"
    spec.write_text("\n".join(lines) + "\n")
    run("qconf", "-Aq", str(spec))
    try:
        run("qmod", "-d", name)
        yield name
    finally:
        delete_jobs(jobs_named(job_prefix))
        run("qconf", "-dq", name, check=False)


def command_shims(directory: Path, log: Path) -> Path:
    """A directory of scripts named like the Grid Engine commands: each logs its call
    (time, command, first argument) to ``log`` and runs the real one. Put it first on the
    daemon's PATH."""
    shims = directory / "shims"
    shims.mkdir()
    for name in COMMANDS:
        real = run("sh", "-c", f"command -v {name}").stdout.strip()
        script = shims / name
        script.write_text(
            "#!/bin/sh\n"
            f'printf "%s %s\\n" "$(date +%s.%N)" "{name} $1" >> {shlex.quote(str(log))}\n'
            f'exec {shlex.quote(real)} "$@"\n'
        )
        script.chmod(0o755)
    return shims


def logged_calls(log: Path, since: float = 0.0, until: float = float("inf")) -> dict[str, int]:
    """Commands logged by the shims in [since, until) (wall-clock), by command and first
    argument (``qstat -xml``, ``qstat -j``, ``qsub -terse``, ``qdel 123``...)."""
    counted: dict[str, int] = {}
    if not log.exists():
        return counted
    for line in log.read_text().splitlines():
        stamp, _, command = line.partition(" ")
        if since <= float(stamp) < until:
            counted[command] = counted.get(command, 0) + 1
    return counted
