"""Grid Engine (Son of Grid Engine, Univa/Altair GE, OGS) site adapter: ``adapter: SGE``."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence

from tardis.exceptions.executorexceptions import CommandExecutionFailure
from tardis.interfaces.siteadapter import ResourceStatus

from ..schema.sites import SGEMachineType, SGESection
from .batchsite import (
    AccountingRecord,
    BatchSiteAdapter,
    JobInfo,
    OutputError,
    check_plain,
    is_job_id,
    removal_lines,
)
from .removals import Removal

# Grid Engine reports a state as a combination of letters (qstat(1)). The common
# combinations are listed explicitly so a reader can see each decision; anything else
# falls back to the letter rules in ``_by_letters``.
SGE_STATES: dict[str, ResourceStatus] = {
    "qw": ResourceStatus.Booting,  # queued, waiting
    "hqw": ResourceStatus.Booting,  # held in the queue: still ours, may start later
    "hRwq": ResourceStatus.Booting,  # held, re-queued after a restart
    "Rq": ResourceStatus.Booting,
    "Rqw": ResourceStatus.Booting,
    "t": ResourceStatus.Running,  # being transferred to the execution host
    "r": ResourceStatus.Running,
    "Rr": ResourceStatus.Running,  # restarted and running again
    "Rt": ResourceStatus.Running,
    "dr": ResourceStatus.Running,  # deletion requested, the pilot is draining
    "dt": ResourceStatus.Running,
    "dRr": ResourceStatus.Running,
    "s": ResourceStatus.Stopped,  # suspended job
    "S": ResourceStatus.Stopped,  # suspended queue
    "T": ResourceStatus.Stopped,  # suspended by a load threshold
    "ds": ResourceStatus.Stopped,
    "dS": ResourceStatus.Stopped,
    "dT": ResourceStatus.Stopped,
    "dqw": ResourceStatus.Deleted,  # deleted while queued: will never run
    "dhqw": ResourceStatus.Deleted,
    "Eqw": ResourceStatus.Error,  # error state: will never start unless an admin clears it
    "Ehqw": ResourceStatus.Error,
    "EhRqw": ResourceStatus.Error,
    "z": ResourceStatus.Deleted,  # zombie: finished
}


def _by_letters(state: str) -> ResourceStatus | None:
    if not state or not set(state) <= set("dEhrRsStTwqz"):
        return None
    if "E" in state:
        return ResourceStatus.Error
    if "z" in state:
        return ResourceStatus.Deleted
    if set(state) & set("sST"):
        return ResourceStatus.Stopped
    if set(state) & set("rt"):
        return ResourceStatus.Running
    if "d" in state:
        return ResourceStatus.Deleted
    return ResourceStatus.Booting


#: qdel's line for each id it was given (SGE 8.1.9, recorded in tests/fixtures/sge/qdel-*):
#: all on stdout, exit code 1 if any id failed. A job in deletion already (its pilot got
#: the -notify warning) is on its way out: its removal stands requested
QDEL_ANSWERS: list[tuple[re.Pattern[str], Removal | None]] = [
    (re.compile(r"\S+ has registered the job (?P<id>\d+) for deletion"), Removal.REMOVED),
    (re.compile(r"\S+ has deleted job (?P<id>\d+)"), Removal.REMOVED),
    (re.compile(r"job (?P<id>\d+) is already in deletion"), Removal.REMOVED),
    (re.compile(r'denied: job "(?P<id>\d+)" does not exist'), Removal.GONE),
]

#: characters handed to the XML parser at a time (see _parse_in_pieces)
_PIECE = 8192


def _parse_in_pieces(text: str) -> ElementTree.Element:
    """``ElementTree.fromstring`` fed in pieces.

    The listing is parsed in a worker thread, but one ``fromstring`` of a 10,000-job
    listing (3.4 MB) holds the GIL for its whole 0.4 s, stalling the event loop as much as
    parsing on it would; between pieces the loop gets the GIL back (measured: worst stall
    0.08 s instead of 0.42 s).
    """
    parser = ElementTree.XMLParser()
    for start in range(0, len(text), _PIECE):
        parser.feed(text[start : start + _PIECE])
    return parser.close()


class SGEAdapter(BatchSiteAdapter):
    """Drones as Grid Engine jobs.

    ``qdel`` of a job submitted with ``-notify`` sends SIGUSR2 to the pilot and kills it
    only after the queue's ``notify`` time, so stopping a drone *is* ``qdel`` and the
    pilot drains in the meantime.
    """

    batch_system = "sge"
    schema = SGESection

    def check_settings(self) -> None:
        config = self.machine_config
        assert isinstance(config, SGEMachineType)
        self.parallel_environment = config.ParallelEnvironment
        self.memory_resource = config.MemoryResource
        self.project = config.Project
        self.notify = config.Notify

    def submit_command(self, drone_uuid: str, environment: Mapping[str, str]) -> list[str]:
        settings = self.settings
        meta = self.machine_meta_data
        cores = int(meta["Cores"])
        argv = ["qsub", "-terse", "-N", drone_uuid, "-S", "/bin/bash"]
        if settings.queue:
            argv += ["-q", settings.queue]
        if self.parallel_environment:
            argv += ["-pe", self.parallel_environment, str(cores)]
        if self.memory_resource and meta.get("Memory"):
            # Grid Engine counts consumable memory per slot
            slots = cores if self.parallel_environment else 1
            per_slot_mb = int(float(meta["Memory"]) * 1024 / slots)
            argv += ["-l", f"{self.memory_resource}={per_slot_mb}M"]
        if settings.walltime:
            argv += ["-l", f"h_rt={settings.walltime}"]
        if self.project:
            argv += ["-P", self.project]
        if self.notify:
            argv.append("-notify")
        if settings.log_directory:
            argv += ["-o", settings.log_directory, "-e", settings.log_directory]
        for name, value in environment.items():
            check_plain(value, f"drone environment {name}")
            argv += ["-v", f"{name}={value}"]
        argv += settings.extra_options
        return argv

    def parse_job_id(self, stdout: str) -> str:
        job_id = stdout.strip()
        if not is_job_id(job_id):
            raise OutputError(f"qsub -terse printed {stdout.strip()[:200]!r}, not a job id")
        return job_id

    def listing_command(self) -> list[str]:
        return ["qstat", "-xml"]

    def parse_listing(self, stdout: str) -> dict[str, JobInfo]:
        # A drone missing from the listing is looked up in the accounting and may end up
        # declared gone, so anything but the exact shape of a qstat -xml answer is refused:
        # <job_info> holding one <queue_info> (running) and one <job_info> (pending), each
        # holding only <job_list> entries.
        try:
            root = _parse_in_pieces(stdout)
        except ElementTree.ParseError as err:
            raise OutputError(f"qstat -xml printed unreadable XML ({err})") from err
        if root.tag != "job_info":
            raise OutputError(f"qstat -xml printed <{root.tag}>, not <job_info>")
        sections = [child.tag for child in root]
        if sections != ["queue_info", "job_info"]:
            raise OutputError(
                f"qstat -xml printed <job_info> holding {sections}, not [queue_info, job_info]"
            )
        jobs: dict[str, JobInfo] = {}
        for section in root:
            if (section.text or "").strip():
                raise OutputError(f"qstat -xml printed text inside <{section.tag}>")
            for entry in section:
                if entry.tag != "job_list":
                    raise OutputError(f"qstat -xml printed <{entry.tag}> inside <{section.tag}>")
                job_id = (entry.findtext("JB_job_number") or "").strip()
                state = (entry.findtext("state") or "").strip()
                if not is_job_id(job_id) or not state:
                    raise OutputError("qstat -xml listed a job without a number or state")
                # array tasks share a number; a drone is never an array, first entry wins
                jobs.setdefault(
                    job_id, JobInfo(job_id, state, (entry.findtext("JB_name") or "").strip())
                )
        return jobs

    def translate_state(self, state: str) -> ResourceStatus | None:
        return SGE_STATES.get(state) or _by_letters(state)

    def accounting_command(self, job_id: str) -> list[str]:
        return ["qacct", "-j", job_id]

    def accounting_missing(self, failure: CommandExecutionFailure) -> bool:
        return "not found" in (failure.stderr or "")

    def parse_accounting(self, job_id: str, stdout: str) -> AccountingRecord | None:
        # a rescheduled job has several records separated by ===== lines; the last counts
        records = [block for block in re.split(r"^=+\s*$", stdout, flags=re.M) if block.strip()]
        if not records:
            return None
        fields: dict[str, str] = {}
        for line in records[-1].splitlines():
            key, _, value = line.strip().partition(" ")
            if key:
                fields[key] = value.strip()
        if fields.get("jobnumber") != job_id:
            raise OutputError(f"qacct -j {job_id} answered about job {fields.get('jobnumber')!r}")
        failed = fields.get("failed", "0")
        exit_status = fields.get("exit_status", "?")
        return AccountingRecord(
            job_id=job_id,
            exit_status=exit_status,
            failed=not failed.startswith("0") or not exit_status.startswith("0"),
            detail="" if failed.startswith("0") else f"failed {failed}",
        )

    def terminate_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["qdel", *job_ids]

    def parse_removal(
        self, job_ids: Sequence[str], stdout: str, stderr: str, exit_code: int | None
    ) -> dict[str, Removal]:
        # every id gets a line of its own: an id without one is not clear, whatever the
        # exit code (qmaster unreachable prints commlib errors naming no job)
        return removal_lines(job_ids, f"{stdout}\n{stderr}", QDEL_ANSWERS).clear

    async def job_exists(self, job_id: str) -> bool:
        # qstat -j exits 1 both for a job that does not exist and for a qmaster it cannot
        # reach (measured on SGE 8.1.9): only the "do not exist" answer naming this job
        # confirms it is gone, any other failure is retried
        try:
            await self.run(["qstat", "-j", job_id])
        except CommandExecutionFailure as failure:
            text = (failure.stderr or "") + (failure.stdout or "")
            head, _, named = text.partition("Following jobs do not exist")
            if named and job_id in named.replace(":", " ").split():
                return False
            raise
        return True
