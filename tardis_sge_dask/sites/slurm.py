"""SLURM site adapter: ``adapter: SlurmBatch`` (TARDIS's own ``Slurm`` stays usable).

The dialect of the shared batch-site base for SLURM (measured on 22.05):

* ``sbatch --parsable`` reads the job script on stdin and prints the job id;
* one ``squeue -h -t all --me -o '%i|%T|%j'`` per listing window (``squeue --json``
  ignores job filters); finished jobs stay listed for ``MinJobAge``;
* ``sacct -P -n -X -j ID`` for jobs that left the listing (``sacct --json`` reports
  wrong exit codes in 22.05);
* stopping a drone is graceful: ``scancel --batch --signal=SIG`` gives the pilot its
  warning, and a plain ``scancel`` follows after ``StopGrace`` seconds unless the job
  ended by itself. The grace runs in a task on the event loop and is re-checked on
  every status call, so neither blocks the daemon and a failed kill is retried. The plain
  ``scancel`` is one command for many drones of the site (``removals.py``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import time
from collections.abc import Mapping, Sequence

from tardis.exceptions.executorexceptions import CommandExecutionFailure
from tardis.exceptions.tardisexceptions import TardisResourceStatusUpdateFailed
from tardis.interfaces.siteadapter import ResourceStatus
from tardis.utilities.attributedict import AttributeDict

from ..schema.sites import SlurmMachineType, SlurmSection
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
from .settings import SiteConfigError

logger = logging.getLogger("cobald.runtime.tardis_sge_dask.sites.slurm")

# Every state of squeue(1) "JOB STATE CODES" (22.05). Drones are submitted with
# --no-requeue, so NODE_FAIL and PREEMPTED are final rather than a detour to PENDING.
SLURM_STATES: dict[str, ResourceStatus] = {
    "PENDING": ResourceStatus.Booting,
    "CONFIGURING": ResourceStatus.Booting,  # nodes allocated but still booting
    "POWER_UP_NODE": ResourceStatus.Booting,
    "REQUEUED": ResourceStatus.Booting,  # an admin requeued it: it will run again
    "REQUEUE_FED": ResourceStatus.Booting,
    "REQUEUE_HOLD": ResourceStatus.Booting,  # held, like SGE's hqw: ours, may start later
    "RESV_DEL_HOLD": ResourceStatus.Booting,
    "RUNNING": ResourceStatus.Running,
    "RESIZING": ResourceStatus.Running,
    "SIGNALING": ResourceStatus.Running,  # a signal is being delivered; the pilot lives
    "SUSPENDED": ResourceStatus.Stopped,
    "STOPPED": ResourceStatus.Stopped,  # SIGSTOPped, keeps its allocation
    "SPECIAL_EXIT": ResourceStatus.Error,  # held after an epilog decision: needs an admin
    # the pilot has exited; the job lingers in squeue for MinJobAge
    "COMPLETING": ResourceStatus.Deleted,
    "STAGE_OUT": ResourceStatus.Deleted,
    "COMPLETED": ResourceStatus.Deleted,
    "CANCELLED": ResourceStatus.Deleted,
    "FAILED": ResourceStatus.Deleted,
    "TIMEOUT": ResourceStatus.Deleted,
    "NODE_FAIL": ResourceStatus.Deleted,
    "PREEMPTED": ResourceStatus.Deleted,
    "BOOT_FAIL": ResourceStatus.Deleted,
    "DEADLINE": ResourceStatus.Deleted,
    "OUT_OF_MEMORY": ResourceStatus.Deleted,
    "REVOKED": ResourceStatus.Deleted,  # a federation sibling started elsewhere
}

#: states after which a job never runs again (sacct answers only these for ended jobs)
FINAL_STATES = frozenset(
    state for state, status in SLURM_STATES.items() if status is ResourceStatus.Deleted
) - {"COMPLETING", "STAGE_OUT"}

#: squeue ids of array tasks (``21_3``, pending ``22_[1-10%2]``) and het job components
#: (``23+1``): jobs of the drone account that are never drones, see squeue(1) ``%i``
_FOREIGN_JOB_ID = re.compile(r"[0-9]+(?:_(?:[0-9]+|\[[0-9,%.\-]+\]?)|\+[0-9]+)")


#: ``scancel -v``'s line for each id it sends a cancel for (22.05, recorded in
#: tests/fixtures/slurm/scancel-v-bulk.*), on stderr, before the answer comes back
SCANCEL_SENT = re.compile(r"scancel: Terminating job (?P<id>\d+)")
#: its error line for an id the cancel failed for; exit code 0 when these are all
_KILL_ERROR = r"scancel: error: Kill job error on job id (?P<id>\d+): "
SCANCEL_ERRORS: list[tuple[re.Pattern[str], Removal | None]] = [
    (re.compile(_KILL_ERROR + "Invalid job id specified"), Removal.GONE),
    (re.compile(_KILL_ERROR + "Job/step already completing or completed"), Removal.GONE),
    # any other error of one id (permission denied, "can not be altered now", ...)
    (re.compile(_KILL_ERROR + ".*"), None),
]


def signal_name(value: object, key_path: str) -> str:
    """``USR2``, ``SIGUSR2`` or ``12`` -> ``USR2`` (the spelling sbatch and scancel take)."""
    text = str(value).strip().upper()
    try:
        number = int(text)
    except ValueError:
        name = text if text.startswith("SIG") else f"SIG{text}"
        if name in signal.Signals.__members__:
            return name[3:]
    else:
        try:
            return signal.Signals(number).name[3:]
        except ValueError:
            pass
    raise SiteConfigError(key_path, f"not a signal name: {value!r} (e.g. USR2, TERM)")


def slurm_time(seconds: int) -> str:
    """``--time`` value; SLURM counts whole minutes, and H:MM:SS keeps the configured value."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class SlurmBatchAdapter(BatchSiteAdapter):
    """Drones as SLURM batch jobs, stopped with a warning signal and a grace period."""

    batch_system = "slurm"
    schema = SlurmSection
    queue_key = "Partition"

    def check_settings(self) -> None:
        config = self.machine_config
        assert isinstance(config, SlurmMachineType)
        self.account = config.Account
        self.qos = config.QOS
        self.stop_signal = signal_name(config.StopSignal, f"{self.settings.key_prefix}.StopSignal")
        self.stop_grace = float(config.StopGrace)
        self.warning_time = int(config.WarningTime)
        self.request_memory = config.RequestMemory
        self.export = config.Export
        self.job_path = config.JobPath
        #: job id -> when the plain scancel is due after a graceful stop
        self._kill_due: dict[str, float] = {}
        self._kill_tasks: set[asyncio.Task] = set()

    # ------------------------------------------------------------ submission
    def submit_command(self, drone_uuid: str, environment: Mapping[str, str]) -> list[str]:
        settings = self.settings
        meta = self.machine_meta_data
        argv: list[str] = []
        if self.export == "clean":
            # sbatch copies its own environment into the job: start it from nothing so
            # the daemon's variables (venv, credentials) never reach a node
            argv += ["env", "-i", f"PATH={self.job_path}"]
        # one task on one node: a drone is one process tree, never spread over hosts
        argv += [
            "sbatch", "--parsable", f"--job-name={drone_uuid}",
            "--nodes=1", "--ntasks=1", f"--cpus-per-task={int(meta['Cores'])}",
            "--no-requeue",
        ]  # fmt: skip
        if settings.queue:
            argv.append(f"--partition={settings.queue}")
        if self.account:
            argv.append(f"--account={self.account}")
        if self.qos:
            argv.append(f"--qos={self.qos}")
        if self.request_memory and meta.get("Memory"):
            argv.append(f"--mem={int(float(meta['Memory']) * 1024)}")
        if settings.walltime:
            argv.append(f"--time={slurm_time(settings.walltime)}")
        if self.warning_time:
            # B: signals only the batch shell, i.e. the pilot, which shields its payload
            argv.append(f"--signal=B:{self.stop_signal}@{self.warning_time}")
        if settings.log_directory:
            argv += [
                f"--output={settings.log_directory}/%x-%j.out",
                f"--error={settings.log_directory}/%x-%j.err",
            ]
        pairs = [
            f"{name}={check_plain(value, f'drone environment {name}')}"
            for name, value in environment.items()
        ]
        if self.export == "login":
            argv.append("--export=" + ",".join(pairs))
        else:
            argv.append("--export=" + ",".join(["ALL", *pairs]))
        argv += settings.extra_options
        return argv

    def parse_job_id(self, stdout: str) -> str:
        # "id" or, on a multi-cluster setup, "id;cluster"
        job_id = stdout.strip().split(";", 1)[0]
        if not is_job_id(job_id):
            raise OutputError(f"sbatch --parsable printed {stdout.strip()[:200]!r}, not a job id")
        return job_id

    # ---------------------------------------------------------------- status
    def listing_command(self) -> list[str]:
        return ["squeue", "--noheader", "--states=all", "--me", "--format=%i|%T|%j"]

    def parse_listing(self, stdout: str) -> dict[str, JobInfo]:
        # an empty listing is legitimate here; a job missing from it is confirmed by sacct
        jobs: dict[str, JobInfo] = {}
        for line in stdout.splitlines():
            if not line.strip():
                continue
            fields = line.split("|", 2)
            if len(fields) != 3 or not fields[0].strip() or not fields[1].strip():
                raise OutputError(f"squeue printed {line[:200]!r}, not id|state|name")
            job_id, state, name = (field.strip() for field in fields)
            if not state.replace("_", "").isalpha() or not state.isupper() or not state.isascii():
                raise OutputError(f"squeue printed {line[:200]!r}: {state!r} is not a state")
            if not is_job_id(job_id):
                if _FOREIGN_JOB_ID.fullmatch(job_id) and job_id.isascii():
                    continue  # an array task or het job component: never a drone
                raise OutputError(f"squeue printed {line[:200]!r}: {job_id!r} is not a job id")
            jobs.setdefault(job_id, JobInfo(job_id, state, name))
        return jobs

    def translate_state(self, state: str) -> ResourceStatus | None:
        # sacct spells some states with a suffix: "CANCELLED by 0"
        words = state.split()
        return SLURM_STATES.get(words[0]) if words else None

    def accounting_command(self, job_id: str) -> list[str]:
        return ["sacct", "-P", "-n", "-X", "-j", job_id, "-o", "JobID,State,ExitCode"]

    def accounting_missing(self, failure: CommandExecutionFailure) -> bool:
        # without slurmdbd only the listing (MinJobAge) and the grace remain
        return "accounting storage is disabled" in (failure.stderr or "")

    def parse_accounting(self, job_id: str, stdout: str) -> AccountingRecord | None:
        rows = [line.split("|") for line in stdout.splitlines() if line.strip()]
        if any(len(row) != 3 for row in rows):
            raise OutputError(f"sacct -P printed {stdout.strip()[:200]!r}, not id|state|exit")
        # -X -j ID answers about that job only: a row about another one means the output
        # is not what was asked for, and must not decide this drone's fate
        others = sorted({row[0] for row in rows if row[0] != job_id})
        if others:
            raise OutputError(f"sacct -j {job_id} answered about job(s) {', '.join(others)[:200]}")
        if not rows:
            return None
        # a job id reused after an unclean slurmctld stop has several rows: the last counts
        _, state, exit_code = rows[-1]
        base_state = state.split()[0] if state.split() else ""
        if base_state not in FINAL_STATES:
            raise TardisResourceStatusUpdateFailed(
                f"job {job_id} is not listed by squeue, but sacct says it is {state}"
            )
        return AccountingRecord(
            job_id=job_id,
            exit_status=exit_code,
            failed=base_state != "COMPLETED" or exit_code != "0:0",
            detail=state,
        )

    async def resource_status(self, resource_attributes: AttributeDict) -> AttributeDict:
        result = await super().resource_status(resource_attributes)
        job_id = result.get("remote_resource_uuid")
        if job_id in self._kill_due:
            if result.resource_status is ResourceStatus.Deleted:
                del self._kill_due[job_id]
            else:
                await self._kill_if_due(job_id)
        return result

    # ---------------------------------------------------------------- removal
    def terminate_command(self, job_ids: Sequence[str]) -> list[str]:
        # -v: without it scancel of several ids prints nothing even for an unknown or a
        # completed one (recorded: scancel-quiet-bulk.*), so silence confirms nothing
        return ["scancel", "-v", *job_ids]

    def parse_removal(
        self, job_ids: Sequence[str], stdout: str, stderr: str, exit_code: int | None
    ) -> dict[str, Removal]:
        text = f"{stdout}\n{stderr}"
        sent: set[str] = set()
        for line in text.splitlines():
            match = SCANCEL_SENT.fullmatch(line.strip())
            if match is not None:
                sent.add(match["id"])
        if sent - set(job_ids):
            raise OutputError(f"scancel -v answered about jobs {sorted(sent - set(job_ids))}")
        others = "\n".join(
            line for line in text.splitlines() if not SCANCEL_SENT.fullmatch(line.strip())
        )
        read = removal_lines(job_ids, others, SCANCEL_ERRORS)
        if exit_code or read.unread:
            # "Terminating" is printed before the cancel is answered: after a failure of
            # the command (killed, no controller) or a line we cannot read it confirms nothing
            return read.clear
        removed = sent - set(read.clear) - read.unclear
        return {**read.clear, **dict.fromkeys(removed, Removal.REMOVED)}

    def job_already_gone(self, failure: CommandExecutionFailure) -> bool:
        """Whether a failed ``scancel --signal`` of one job means the job is gone."""
        text = (failure.stderr or "") + (failure.stdout or "")
        return "Invalid job id specified" in text or "already completing or completed" in text

    async def terminate_resource(self, resource_attributes: AttributeDict) -> None:
        await super().terminate_resource(resource_attributes)
        self._kill_due.pop(str(resource_attributes.get("remote_resource_uuid")), None)

    async def stop_resource(self, resource_attributes: AttributeDict) -> None:
        job_id = resource_attributes.get("remote_resource_uuid")
        if job_id is None:
            return
        job_id = str(job_id)
        if self.translate_state(self._last_state.get(job_id, "RUNNING")) is not (
            ResourceStatus.Running
        ):
            # not started: there is no pilot to warn
            await self.terminate_resource(resource_attributes)
            return
        # --state=RUNNING: signalling a job that is not running makes scancel retry
        # "Job can not be altered now" for about 95 s; with the filter it is a no-op and
        # the kill after the grace removes a job that went back to PENDING
        argv = [
            "scancel", "--state=RUNNING", "--batch", f"--signal={self.stop_signal}", job_id
        ]  # fmt: skip
        try:
            await self.run(argv)
        except CommandExecutionFailure as failure:
            if self.job_already_gone(failure):
                logger.info("%s: already gone", self.describe(resource_attributes))
                return
            if "can not be altered now" in (failure.stderr or ""):
                await self.terminate_resource(resource_attributes)
                return
            raise
        except TimeoutError as err:
            raise TardisResourceStatusUpdateFailed(f"signal to job {job_id} timed out") from err
        logger.info(
            "%s: sent SIG%s to the pilot; cancelling in %.0f s unless it ends first",
            self.describe(resource_attributes),
            self.stop_signal,
            self.stop_grace,
        )
        self._kill_due.setdefault(job_id, time.monotonic() + self.stop_grace)
        task = asyncio.get_running_loop().create_task(self._kill_later(job_id))
        self._kill_tasks.add(task)
        task.add_done_callback(self._kill_tasks.discard)

    async def _kill_later(self, job_id: str) -> None:
        due = self._kill_due.get(job_id)
        if due is not None:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await self._kill_if_due(job_id)

    async def _kill_if_due(self, job_id: str) -> None:
        """The plain ``scancel`` after the grace; a failure is retried by the next status."""
        due = self._kill_due.get(job_id)
        if due is None or time.monotonic() < due:
            return
        try:
            # with the other drones' removals of this site (removals.py)
            await self._removal(job_id)
        except CommandExecutionFailure as failure:
            logger.warning(
                "%s: scancel %s after the stop grace failed, will retry: %s",
                self.site_name,
                job_id,
                (failure.stderr or failure.stdout or "").strip()[:300],
            )
            return
        except Exception as err:  # runs in its own task, must not die loudly
            logger.warning(
                "%s: scancel %s after the stop grace failed, will retry: %r",
                self.site_name,
                job_id,
                err,
            )
            return
        logger.info(
            "%s: stop grace of slurm job %s over (%.0f s); cancelled it if it still ran",
            self.site_name,
            job_id,
            self.stop_grace,
        )
        self._kill_due.pop(job_id, None)
