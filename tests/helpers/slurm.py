"""Look at the real SLURM the way an admin would: squeue, sacct, scontrol, scancel."""

from __future__ import annotations

import subprocess


def jobs(name_prefix: str) -> dict[str, dict[str, str]]:
    """job id -> {name, state} for this test's jobs still known to slurmctld."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%i|%T|%j"], capture_output=True, text=True, check=True
    ).stdout
    found = {}
    for line in out.splitlines():
        job_id, state, name = line.split("|", 2)
        if name.startswith(name_prefix):
            found[job_id] = {"name": name, "state": state}
    return found


def alive(name_prefix: str) -> dict[str, dict[str, str]]:
    """Jobs that have not ended (squeue -t all keeps ended ones for MinJobAge)."""
    return {
        job_id: job
        for job_id, job in jobs(name_prefix).items()
        if job["state"] in {"PENDING", "CONFIGURING", "RUNNING", "SUSPENDED", "COMPLETING"}
    }


def running(name_prefix: str) -> dict[str, dict[str, str]]:
    return {job_id: job for job_id, job in jobs(name_prefix).items() if job["state"] == "RUNNING"}


def show(job_id: str) -> dict[str, str]:
    """``scontrol show job -o`` as a dict (values without spaces only)."""
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=True
    ).stdout
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


def accounting(job_id: str) -> tuple[str, str] | None:
    """(State, ExitCode) from sacct, None before the record exists."""
    out = subprocess.run(
        ["sacct", "-P", "-n", "-X", "-j", job_id, "-o", "JobID,State,ExitCode"],
        capture_output=True,
        text=True,
    ).stdout
    rows = [line.split("|") for line in out.splitlines() if line.startswith(f"{job_id}|")]
    return (rows[-1][1], rows[-1][2]) if rows else None


def cancel(name_prefix: str) -> None:
    """Remove every job of this test (cleanup), never anyone else's."""
    ids = list(alive(name_prefix))
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True)
