"""Look at the real Grid Engine the way an admin would: qstat, qdel."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ElementTree


def jobs(name_prefix: str) -> dict[str, dict[str, str]]:
    """job id -> {name, state} for this test's jobs (names start with the site name)."""
    out = subprocess.run(
        ["qstat", "-u", "*", "-xml"], capture_output=True, text=True, check=True
    ).stdout
    found = {}
    for entry in ElementTree.fromstring(out).iter("job_list"):
        name = entry.findtext("JB_name") or ""
        if name.startswith(name_prefix):
            found[entry.findtext("JB_job_number")] = {
                "name": name,
                "state": entry.findtext("state"),
            }
    return found


def running(name_prefix: str) -> dict[str, dict[str, str]]:
    return {job_id: job for job_id, job in jobs(name_prefix).items() if job["state"] == "r"}


def details(job_id: str) -> ElementTree.Element:
    out = subprocess.run(
        ["qstat", "-xml", "-j", job_id], capture_output=True, text=True, check=True
    ).stdout
    return ElementTree.fromstring(out)


def environment(job_id: str) -> dict[str, str]:
    """The job's -v variables as every user sees them in ``qstat -j``."""
    return {
        item.findtext("VA_variable"): item.findtext("VA_value") or ""
        for item in details(job_id).iter("job_sublist")
        if item.findtext("VA_variable") is not None
    }


def hard_resources(job_id: str) -> dict[str, str]:
    found = {}
    for item in details(job_id).iter("qstat_l_requests"):
        name = item.findtext("CE_name")
        if name:
            found[name] = item.findtext("CE_stringval") or item.findtext("CE_doubleval") or ""
    return found


def delete(name_prefix: str) -> None:
    """Remove every job of this test (cleanup), never anyone else's."""
    ids = list(jobs(name_prefix))
    if ids:
        subprocess.run(["qdel", *ids], capture_output=True)
