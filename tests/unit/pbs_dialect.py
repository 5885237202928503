"""A PBS Professional dialect, written only to show what a third batch system takes.

This file is everything such a dialect needs besides its one registry line
(``SiteAdapterEntry("PBS", "<module>:PBSAdapter")``): its keys (the schema ``check``, the
daemon and the adapter read) and its commands. It was tried against hand-written
outputs in PBS Professional's shape (tests/fixtures/pbs/README.md), never against a
real PBS server: it is a stub for tests, not an adapter for production.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field
from tardis.exceptions.executorexceptions import CommandExecutionFailure
from tardis.interfaces.siteadapter import ResourceStatus

from tardis_sge_dask.schema.sites import BatchMachineType, BatchSiteSection
from tardis_sge_dask.schema.types import Flag, PlainName, Text
from tardis_sge_dask.sites.batchsite import (
    AccountingRecord,
    BatchSiteAdapter,
    JobInfo,
    OutputError,
    check_plain,
    is_job_id,
    removal_lines,
)
from tardis_sge_dask.sites.removals import Removal

#: qdel's line for an id it could not remove (hand-written, tests/fixtures/pbs); a removed
#: job gets no line
QDEL_ANSWERS: list[tuple[re.Pattern[str], Removal | None]] = [
    (re.compile(r"qdel: Unknown Job Id (?P<id>\d+)(?:\.\S+)?"), Removal.GONE),
    (re.compile(r"qdel: Job has finished (?P<id>\d+)(?:\.\S+)?"), Removal.GONE),
    (re.compile(r"qdel: .* (?P<id>\d+)(?:\.\S+)?"), None),
]


# ----------------------------------------------------------------------- its keys
class PBSMachineType(BatchMachineType):
    Queue: Text | None = Field(None, description="qsub -q")
    Rerunnable: Flag = Field(False, description="qsub -r y: PBS may rerun a drone")


class PBSSection(BatchSiteSection):
    machine_type_schema = PBSMachineType

    MachineTypeConfiguration: dict[PlainName, PBSMachineType] = Field(
        {}, description="the submission keys of each machine type"
    )


# ----------------------------------------------------------------- its commands
#: job_state letters of qstat(1B)
PBS_STATES: dict[str, ResourceStatus] = {
    "Q": ResourceStatus.Booting,
    "W": ResourceStatus.Booting,  # waiting for its start time
    "H": ResourceStatus.Booting,  # held: still ours, may start later
    "T": ResourceStatus.Booting,  # in transit to another server
    "R": ResourceStatus.Running,
    "E": ResourceStatus.Running,  # exiting after running
    "S": ResourceStatus.Stopped,
    "U": ResourceStatus.Stopped,
    "F": ResourceStatus.Deleted,
    "X": ResourceStatus.Deleted,
}


def _number(job_id: str) -> str:
    """``4301.pbs-head.example.org`` -> ``4301`` (the server accepts the short form)."""
    return job_id.split(".", 1)[0]


def _jobs(stdout: str, command: str) -> Mapping[str, Any]:
    try:
        answer = json.loads(stdout)
    except ValueError as err:
        raise OutputError(f"{command} printed no JSON ({err})") from err
    if not isinstance(answer, dict) or "pbs_server" not in answer:
        raise OutputError(f"{command} printed JSON not shaped like a qstat answer")
    jobs = answer.get("Jobs", {})  # a server without jobs leaves the key out
    if not isinstance(jobs, dict):
        raise OutputError(f"{command} printed Jobs that are not a mapping")
    return jobs


class PBSAdapter(BatchSiteAdapter):
    """Drones as PBS Professional jobs (stub)."""

    batch_system = "pbs"
    schema = PBSSection

    def submit_command(self, drone_uuid: str, environment: Mapping[str, str]) -> list[str]:
        config = self.machine_config
        assert isinstance(config, PBSMachineType)
        meta = self.machine_meta_data
        select = f"select=1:ncpus={int(meta['Cores'])}:mem={int(float(meta['Memory']) * 1024)}mb"
        argv = ["qsub", "-N", drone_uuid, "-S", "/bin/bash", "-l", select]
        argv += ["-r", "y" if config.Rerunnable else "n"]
        if self.settings.queue:
            argv += ["-q", self.settings.queue]
        if self.settings.walltime:
            argv += ["-l", f"walltime={self.settings.walltime}"]
        if self.settings.log_directory:
            argv += ["-o", self.settings.log_directory, "-e", self.settings.log_directory]
        pairs = [
            f"{name}={check_plain(value, f'drone environment {name}')}"
            for name, value in environment.items()
        ]
        if pairs:
            argv += ["-v", ",".join(pairs)]
        return argv + self.settings.extra_options

    def parse_job_id(self, stdout: str) -> str:
        job_id = _number(stdout.strip())
        if not is_job_id(job_id):
            raise OutputError(f"qsub printed {stdout.strip()[:200]!r}, not a job id")
        return job_id

    def listing_command(self) -> list[str]:
        return ["qstat", "-f", "-F", "json"]

    def parse_listing(self, stdout: str) -> dict[str, JobInfo]:
        listing: dict[str, JobInfo] = {}
        for full_id, job in _jobs(stdout, "qstat -f -F json").items():
            job_id = _number(full_id)
            if not is_job_id(job_id) or not isinstance(job, dict) or "job_state" not in job:
                raise OutputError(f"qstat -f -F json listed {full_id!r} without a state")
            listing[job_id] = JobInfo(job_id, str(job["job_state"]), str(job.get("Job_Name", "")))
        return listing

    def translate_state(self, state: str) -> ResourceStatus | None:
        return PBS_STATES.get(state)

    def accounting_command(self, job_id: str) -> list[str]:
        return ["qstat", "-x", "-f", "-F", "json", job_id]

    def accounting_missing(self, failure: CommandExecutionFailure) -> bool:
        return "Unknown Job Id" in (failure.stderr or "")

    def parse_accounting(self, job_id: str, stdout: str) -> AccountingRecord | None:
        jobs = {_number(key): job for key, job in _jobs(stdout, "qstat -x").items()}
        if set(jobs) - {job_id}:
            raise OutputError(f"qstat -x {job_id} answered about {sorted(jobs)}")
        job = jobs.get(job_id)
        if job is None or job.get("job_state") not in ("F", "X"):
            return None
        exit_status = str(job.get("Exit_status", "?"))
        return AccountingRecord(job_id, exit_status, failed=exit_status != "0")

    def terminate_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["qdel", *job_ids]

    def parse_removal(
        self, job_ids: Sequence[str], stdout: str, stderr: str, exit_code: int | None
    ) -> dict[str, Removal]:
        read = removal_lines(job_ids, f"{stdout}\n{stderr}", QDEL_ANSWERS)
        if read.unread:
            return read.clear
        # silence is success; qdel exits 153 when any id was unknown, so the exit code
        # alone tells nothing about the others
        silent = set(job_ids) - set(read.clear) - read.unclear
        return {**read.clear, **dict.fromkeys(silent, Removal.REMOVED)}
