"""The batch-command layer of site adapters (Grid Engine, SLURM, ...).

A dialect (``sge.py``, ``slurm.py``) only says how to spell commands and read their
output; this base owns everything that must behave the same on every batch system (the
settings and the job script are :mod:`.jobsite`'s, shared with the Local adapter):

* commands are argv lists joined with :func:`shlex.join`, so no configuration value or
  drone field ever reaches a shell unquoted; the job script travels on stdin;
* status is one listing of the user's jobs per ``listing_max_age``, shared by every
  machine type of a site, never one call per drone (:mod:`.listing`);
* a job that left the listing is looked up in the accounting (with a grace period,
  because accounting records appear late) to tell "finished" from "not yet recorded";
* removals are one command for many jobs of a site, each drone told about its own job
  (:mod:`.removals`);
* every failure maps to an exception TARDIS survives (docs/maintainers.md, "What TARDIS
  survives"): a broken ``qstat`` means "retry later", never a dead daemon.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shlex
import time
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from tardis.exceptions.executorexceptions import CommandExecutionFailure, ExecutorFailure
from tardis.exceptions.tardisexceptions import TardisResourceStatusUpdateFailed
from tardis.interfaces.executor import Executor
from tardis.interfaces.siteadapter import ResourceStatus
from tardis.utilities.attributedict import AttributeDict
from tardis.utilities.executors.shellexecutor import ShellExecutor

from .jobscript import JobScriptError
from .jobsite import JobScriptSiteAdapter, retried_when_stopping
from .listing import SiteJobListing
from .removals import Outcomes, Removal, RemovalCoalescer, lines_naming
from .settings import SiteConfigError

logger = logging.getLogger("cobald.runtime.tardis_sge_dask.sites")

#: how many ended jobs an adapter remembers, so the accounting is asked about each once
_ENDED_REMEMBERED = 10_000


class OutputError(ValueError):
    """A batch-system command answered with output we cannot read."""


@dataclass(frozen=True)
class JobInfo:
    """One job as the batch system's listing shows it."""

    job_id: str
    state: str
    name: str = ""


@dataclass(frozen=True)
class AccountingRecord:
    """What the accounting says about a job that has ended."""

    job_id: str
    exit_status: str
    failed: bool
    detail: str = ""


class BatchSiteAdapter(JobScriptSiteAdapter):
    """A TARDIS site adapter for a batch system; subclasses supply the dialect.

    The batch-command layer over :class:`JobScriptSiteAdapter`: the site's executor, one
    cached listing per site, the accounting of jobs gone from it, removal by command.
    """

    expected_errors = (OutputError, JobScriptError)
    #: per-site shared job listings, keyed by (adapter class, site name)
    _listings: ClassVar[dict[tuple[type, str], SiteJobListing]] = {}
    #: per-site removal bulks, keyed like the listings, with the listing whose
    #: drone-command slots they hold
    _removals: ClassVar[dict[tuple[type, str], tuple[SiteJobListing, RemovalCoalescer]]] = {}

    def __init__(self, machine_type: str, site_name: str):
        super().__init__(machine_type, site_name)
        self._executor: Executor = getattr(self.site_config, "executor", None) or ShellExecutor()
        key = (type(self), site_name)
        if key not in self._listings:
            self._listings[key] = SiteJobListing(
                self._run_listing, self.parse_listing, float(self.site_config.listing_max_age)
            )
        self._listing = self._listings[key]
        if key not in self._removals or self._removals[key][0] is not self._listing:
            # a site's listing made anew (tests) gets its removals anew, or their bulks
            # would take slots of a listing nobody else uses any more
            self._removals[key] = (
                self._listing,
                RemovalCoalescer(self.remove_jobs, self._listing.drone_command),
            )
        self._removal = self._removals[key][1]
        #: job ids that are known to have ended, so the accounting is asked only once
        self._ended: dict[str, ResourceStatus] = {}
        #: when a job was first missing from the listing without an accounting record
        self._missing_since: dict[str, float] = {}
        self._last_state: dict[str, str] = {}
        self._adoptable: dict[str, str] | None = None
        #: when jobs were submitted, until a listing shows them (a cached one may predate them)
        self._submitted_at: dict[str, float] = {}
        #: drones whose submission failed -> when it was sent (it may have arrived)
        self._uncertain: dict[str, float] = {}
        #: the listing last indexed by job name, and that index (for second jobs)
        self._names_of: tuple[dict[str, JobInfo], dict[str, list[str]]] | None = None
        #: second jobs of a drone whose removal was requested
        self._seconds_removed: set[str] = set()
        #: drones whose job id the batch system gave to another job (logged once each)
        self._lost_to_reuse: set[str] = set()

    # ------------------------------------------------------------------ dialect
    @abstractmethod
    def parse_job_id(self, stdout: str) -> str:
        """The job id from the submit command's output (raise :class:`OutputError`)."""

    @abstractmethod
    def listing_command(self) -> list[str]:
        """argv listing every job of the submitting user."""

    @abstractmethod
    def parse_listing(self, stdout: str) -> dict[str, JobInfo]:
        """job id -> job, from the listing (raise :class:`OutputError` on garbage)."""

    @abstractmethod
    def translate_state(self, state: str) -> ResourceStatus | None:
        """The TARDIS status of a native state, ``None`` for a state we do not know."""

    @abstractmethod
    def accounting_command(self, job_id: str) -> list[str]:
        """argv asking the accounting about one ended job."""

    @abstractmethod
    def parse_accounting(self, job_id: str, stdout: str) -> AccountingRecord | None:
        """The job's final record, ``None`` when there is none (yet)."""

    def accounting_missing(self, failure: CommandExecutionFailure) -> bool:
        """Whether a failed accounting call only means "no record"."""
        return False

    @abstractmethod
    def terminate_command(self, job_ids: Sequence[str]) -> list[str]:
        """argv removing these jobs at once, with one command."""

    @abstractmethod
    def parse_removal(
        self, job_ids: Sequence[str], stdout: str, stderr: str, exit_code: int | None
    ) -> dict[str, Removal]:
        """What the removal command's answer says about each of its ids.

        An id left out is one the answer says nothing clear about: its drone retries.
        Raise :class:`OutputError` when the answer cannot be about these ids at all.
        """

    async def job_exists(self, job_id: str) -> bool:
        """Whether the batch system still has a job its listing left out.

        Asked before a job missing from the listing is declared gone; a dialect whose
        accounting already tells a live job from an ended one (SLURM's sacct) keeps this.
        """
        return False

    @retried_when_stopping
    async def stop_resource(self, resource_attributes: AttributeDict) -> None:
        """Graceful stop; dialects whose removal is not graceful override this."""
        await self.terminate_resource(resource_attributes)

    # ------------------------------------------------------------ plumbing
    async def run(self, argv: Sequence[str], stdin: str | None = None) -> str:
        """Run argv through the site's executor; the stdout on success."""
        return str((await self._execute(argv, stdin)).stdout)

    async def _execute(self, argv: Sequence[str], stdin: str | None = None) -> AttributeDict:
        """Run argv through the site's executor; its result (stdout, stderr, exit_code)."""
        command = shlex.join(argv)
        try:
            result = await asyncio.wait_for(
                self._executor.run_command(command, stdin_input=stdin)
                if stdin is not None
                else self._executor.run_command(command),
                timeout=self.site_settings.command_timeout,
            )
        except TimeoutError:
            logger.warning(
                "%s: %s did not answer within %.0f s",
                self.site_name,
                argv[0],
                self.site_settings.command_timeout,
            )
            raise
        except (ConnectionError, ExecutorFailure) as err:
            # the SSH executor's submit host went away (sshd restarted, the host
            # rebooting): one line, and TARDIS asks again; the executor reconnects then
            reason = err.description if isinstance(err, ExecutorFailure) else str(err)
            logger.warning(
                "%s: cannot reach the submit host to run %s: %s; retrying later",
                self.site_name,
                argv[0],
                reason,
            )
            raise TardisResourceStatusUpdateFailed(f"{argv[0]}: {reason}") from err
        return result

    # ------------------------------------------------------------ TARDIS API
    async def deploy_resource(self, resource_attributes: AttributeDict) -> AttributeDict:
        drone_uuid = resource_attributes.drone_uuid
        if drone_uuid in self._uncertain:
            landed = await self._landed_after_all(drone_uuid)
            if landed is not None:
                return AttributeDict(
                    remote_resource_uuid=landed, resource_status=ResourceStatus.Booting
                )
        adopted = await self._adopt(drone_uuid)
        if adopted is not None:
            logger.warning(
                "drone %s (%s/%s): %s job %s was already submitted for it before a restart;"
                " adopting it instead of submitting again",
                drone_uuid,
                self.site_name,
                self.machine_type,
                self.batch_system,
                adopted,
            )
            return AttributeDict(
                remote_resource_uuid=adopted, resource_status=ResourceStatus.Booting
            )
        argv, script = self.render_submission(resource_attributes)
        asked_at = self._listing.now()
        try:
            async with self._listing.drone_command():
                stdout = await self.run(argv, stdin=script)
        except Exception:
            # the job may have reached the batch system before the answer was lost (an
            # SSH connection broken mid-command, a timeout): look before submitting again
            self._uncertain[drone_uuid] = asked_at
            raise
        job_id = self.parse_job_id(stdout)
        self._submitted_at[job_id] = self._listing.now()
        logger.info(
            "drone %s (%s/%s): submitted as %s job %s",
            drone_uuid,
            self.site_name,
            self.machine_type,
            self.batch_system,
            job_id,
        )
        return AttributeDict(remote_resource_uuid=job_id, resource_status=ResourceStatus.Booting)

    async def _landed_after_all(self, drone_uuid: str) -> str | None:
        """The job of a submission for this drone that failed, if it reached the batch system."""
        # a listing taken after the failed command started; if it fails, the drone's
        # next attempt asks again (the submission is retried only after this answers)
        jobs = await self._listing(newer_than=self._uncertain[drone_uuid])
        del self._uncertain[drone_uuid]
        for job in jobs.values():
            if job.name == drone_uuid:
                logger.warning(
                    "drone %s (%s/%s): its failed submission reached %s as job %s after all;"
                    " taking that job instead of submitting again",
                    drone_uuid,
                    self.site_name,
                    self.machine_type,
                    self.batch_system,
                    job.job_id,
                )
                return job.job_id
        return None

    async def _adopt(self, drone_uuid: str) -> str | None:
        """A job submitted for this drone by an earlier daemon that died before recording it.

        Job names are drone uuids, so one listing after start-up finds such jobs; jobs
        submitted by this process are never orphans, hence the listing is taken once.
        """
        if self._adoptable is None:
            try:
                jobs = await self._listing()
            except Exception as err:  # the submission itself will report a broken site
                logger.debug(
                    "%s: no job listing before the first submission: %s", self.site_name, err
                )
                jobs = {}
            self._adoptable = {job.name: job.job_id for job in jobs.values() if job.name}
        return self._adoptable.pop(drone_uuid, None)

    async def resource_status(self, resource_attributes: AttributeDict) -> AttributeDict:
        job_id = resource_attributes.get("remote_resource_uuid")
        jobs = await self._listing()
        if job_id is None:
            # restored from the registry before the submission was recorded
            by_name = {job.name: job for job in jobs.values()}
            job = by_name.get(resource_attributes.drone_uuid)
            if job is None:
                return AttributeDict(resource_status=ResourceStatus.Deleted)
            job_id = job.job_id
        job_id = str(job_id)
        submitted = self._submitted_at.get(job_id)
        if submitted is not None:
            if job_id not in jobs and submitted > self._listing.taken_at:
                # submitted after the cached listing was taken: only a newer one can tell
                jobs = await self._listing(newer_than=submitted)
            if job_id in jobs:
                del self._submitted_at[job_id]
        job = jobs.get(job_id)
        await self._remove_second_jobs(jobs, job_id, resource_attributes)
        if job is not None and self._taken_by_another(job, resource_attributes):
            return AttributeDict(
                remote_resource_uuid=job_id, resource_status=ResourceStatus.Deleted
            )
        if job is None:
            status = await self._status_of_missing(job_id, resource_attributes)
            return AttributeDict(remote_resource_uuid=job_id, resource_status=status)
        self._missing_since.pop(job_id, None)
        status = self.translate_state(job.state)
        if status is None:
            logger.warning(
                "%s: unknown %s state %r; keeping the drone's state until it changes",
                self.describe(resource_attributes),
                self.batch_system,
                job.state,
            )
            raise TardisResourceStatusUpdateFailed(f"unknown state {job.state!r} of job {job_id}")
        if self._last_state.get(job_id) != job.state:
            logger.info(
                "%s: state %s -> %s (%s)",
                self.describe(resource_attributes),
                self._last_state.get(job_id, "new"),
                job.state,
                status.name,
            )
            self._last_state[job_id] = job.state
        return AttributeDict(remote_resource_uuid=job_id, resource_status=status)

    async def _remove_second_jobs(
        self, jobs: dict[str, JobInfo], job_id: str, resource_attributes: AttributeDict
    ) -> None:
        """Remove jobs carrying the drone's name besides its own: nobody else tracks them.

        TARDIS's SSH executor runs a command again when the connection broke while it
        ran; a qsub that had reached the batch system then leaves a second job for one
        drone, which ``sweep`` cannot call an orphan (its name is a registered drone's).
        """
        drone_uuid = resource_attributes.get("drone_uuid")
        if self._names_of is None or self._names_of[0] is not jobs:
            index: dict[str, list[str]] = {}
            for listed in jobs.values():
                # SLURM lists ended jobs too: those need no removal
                if listed.name and self.translate_state(listed.state) is not ResourceStatus.Deleted:
                    index.setdefault(listed.name, []).append(listed.job_id)
            self._names_of = (jobs, index)
        for second in self._names_of[1].get(drone_uuid, ()):
            if second == job_id or second in self._seconds_removed:
                continue
            self._seconds_removed.add(second)
            logger.warning(
                "%s: %s job %s carries this drone's name too (a submission run twice); removing it",
                self.describe(resource_attributes),
                self.batch_system,
                second,
            )
            try:
                await self._removal(second)
            except Exception as err:  # the drone's own status must not fail for it
                self._seconds_removed.discard(second)
                logger.warning("%s: removing job %s failed: %s", self.site_name, second, err)

    def _taken_by_another(self, job: JobInfo, resource_attributes: AttributeDict) -> bool:
        """Whether the drone's job id now names another job: its own job is gone for good.

        Job names are drone uuids (see :meth:`_adopt`). A controller killed uncleanly
        (slurmctld, sge_qmaster) may forget the jobs it accepted last and hand their ids
        out again; the job listed under the drone's id then belongs to someone else, and
        taking its state (or its accounting record, asked by the same id) for the drone's
        would keep a lost drone alive on another job. A listing without names (an empty
        name) cannot tell, and is believed as before.
        """
        drone_uuid = resource_attributes.get("drone_uuid")
        if not job.name or not drone_uuid or job.name == drone_uuid:
            return False
        if drone_uuid not in self._lost_to_reuse:
            self._lost_to_reuse.add(drone_uuid)
            logger.warning(
                "%s: that job id now belongs to a job named %r, not to this drone: %s"
                " reused the id after losing the drone's own job; the drone is gone",
                self.describe(resource_attributes),
                job.name,
                self.batch_system,
            )
        return True

    async def _status_of_missing(
        self, job_id: str, resource_attributes: AttributeDict
    ) -> ResourceStatus:
        if job_id in self._ended:
            return self._ended[job_id]
        async with self._listing.drone_command():
            exists = await self.job_exists(job_id)
        if exists:
            # the listing left out a live job (a mangled or partial answer): declaring it
            # gone would leave its batch job running, untracked
            logger.warning(
                "%s: missing from the %s listing, but the batch system still has the job;"
                " keeping the drone's state",
                self.describe(resource_attributes),
                self.batch_system,
            )
            raise TardisResourceStatusUpdateFailed(
                f"job {job_id} is missing from the listing, but {self.batch_system} still has it"
            )
        async with self._listing.drone_command():
            record = await self._accounting(job_id)
        if record is not None:
            level = logging.WARNING if record.failed else logging.INFO
            logger.log(
                level,
                "%s: ended, exit status %s%s",
                self.describe(resource_attributes),
                record.exit_status,
                f" ({record.detail})" if record.detail else "",
            )
            return self._remember_ended(job_id, ResourceStatus.Deleted)
        first_missing = self._missing_since.setdefault(job_id, time.monotonic())
        if time.monotonic() - first_missing < self.site_settings.accounting_grace:
            raise TardisResourceStatusUpdateFailed(
                f"job {job_id} left the listing but has no accounting record yet"
            )
        logger.warning(
            "%s: gone from the listing and without an accounting record for %.0f s"
            " (removed while queued, or unknown to the batch system); treating it as gone",
            self.describe(resource_attributes),
            self.site_settings.accounting_grace,
        )
        return self._remember_ended(job_id, ResourceStatus.Deleted)

    def _remember_ended(self, job_id: str, status: ResourceStatus) -> ResourceStatus:
        self._ended[job_id] = status
        if len(self._ended) > _ENDED_REMEMBERED:
            # a daemon runs for months; TARDIS stops asking about a job soon after it ended
            del self._ended[next(iter(self._ended))]
        self._missing_since.pop(job_id, None)
        self._last_state.pop(job_id, None)
        self._submitted_at.pop(job_id, None)
        return status

    async def _accounting(self, job_id: str) -> AccountingRecord | None:
        try:
            stdout = await self.run(self.accounting_command(job_id))
        except CommandExecutionFailure as failure:
            if self.accounting_missing(failure):
                return None
            raise
        return self.parse_accounting(job_id, stdout)

    @retried_when_stopping
    async def terminate_resource(self, resource_attributes: AttributeDict) -> None:
        job_id = resource_attributes.get("remote_resource_uuid")
        if job_id is None:
            return
        try:
            # one command with the other drones' removals of this site (removals.py)
            outcome = await self._removal(str(job_id))
        except TimeoutError as err:
            # TARDIS's shutdown and cleanup states survive only this one
            # (docs/maintainers.md, "What TARDIS survives")
            raise TardisResourceStatusUpdateFailed(f"removal of job {job_id} timed out") from err
        logger.info("%s: %s", self.describe(resource_attributes), outcome.value)

    async def remove_jobs(self, job_ids: Sequence[str]) -> Outcomes:
        """Remove these jobs with one command: each id's outcome, or its drone's error.

        Raises when the command failed as a whole (timeout, lost connection, an answer
        about other jobs); an id the answer says nothing clear about gets the
        :class:`CommandExecutionFailure` a failed ``qdel ID`` would have raised.
        """
        argv = self.terminate_command(job_ids)
        started = time.monotonic()
        try:
            result = await self._execute(argv)
            stdout, stderr = str(result.stdout or ""), str(result.get("stderr") or "")
            exit_code = result.get("exit_code", 0)
        except CommandExecutionFailure as failure:
            # a removal command exits non-zero when any id failed; the others may be fine
            stdout, stderr = failure.stdout or "", failure.stderr or ""
            exit_code = failure.exit_code
        except BaseException:
            logger.debug(
                "%s: %s of %d jobs failed after %.2f s",
                self.site_name,
                argv[0],
                len(job_ids),
                time.monotonic() - started,
            )
            raise
        said = self.parse_removal(job_ids, stdout, stderr, exit_code)
        outcomes: Outcomes = {}
        for job_id in job_ids:
            outcome = said.get(job_id)
            if outcome is None:
                outcome = CommandExecutionFailure(
                    message=f"{argv[0]} of {len(job_ids)} jobs said nothing clear about {job_id}",
                    exit_code=exit_code,
                    stdout=lines_naming(job_id, stdout) or stdout,
                    stderr=lines_naming(job_id, stderr) or stderr,
                )
            outcomes[job_id] = outcome
        logger.debug(
            "%s: %s of %d jobs in %.2f s (exit code %s): %d removed, %d already gone, %d unclear",
            self.site_name,
            argv[0],
            len(job_ids),
            time.monotonic() - started,
            exit_code,
            sum(outcome is Removal.REMOVED for outcome in outcomes.values()),
            sum(outcome is Removal.GONE for outcome in outcomes.values()),
            sum(isinstance(outcome, BaseException) for outcome in outcomes.values()),
        )
        return outcomes

    # ------------------------------------------------------------ helpers
    async def _run_listing(self) -> str:
        return await self.run(self.listing_command())

    @property
    def listing_calls(self) -> int:
        """How many listing commands the site has run (for benchmarks)."""
        return self._listing.calls

    @property
    def removal_commands(self) -> int:
        """How many removal commands the site has run (for benchmarks)."""
        return self._removal.commands


def is_job_id(text: str) -> bool:
    """A batch job number: ASCII digits only (``str.isdigit`` also takes ``²`` and ``٣``)."""
    return text.isascii() and text.isdigit()


def check_plain(value: str, what: str) -> str:
    """Refuse characters a batch system's own option syntax would split on."""
    if any(char in value for char in ",\n\r\0"):
        raise SiteConfigError(what, f"must not contain a comma or a line break: {value!r}")
    return value


def as_pairs(items: Iterable[tuple[str, Any]]) -> list[str]:
    return [f"{key}={value}" for key, value in items]


class RemovalLines(NamedTuple):
    """A removal command's answer, read line by line (:func:`removal_lines`)."""

    #: id -> outcome, for every id one or more lines agree on
    clear: dict[str, Removal]
    #: ids lines spoke about without a clear outcome (an error of that id, lines that
    #: contradict each other, or a line no pattern reads naming it)
    unclear: set[str]
    #: lines no pattern reads
    unread: list[str]


def removal_lines(
    job_ids: Sequence[str], text: str, patterns: Sequence[tuple[re.Pattern[str], Removal | None]]
) -> RemovalLines:
    """Read a removal command's answer line by line, for the dialects' ``parse_removal``.

    Each pattern matches a whole line and names its job in the group ``id``; its outcome
    ``None`` marks a line about a job that says nothing clear (an error of that one id).
    Raises :class:`OutputError` for a line about a job that was not asked about: that
    answer is not about these ids.
    """
    asked = set(job_ids)
    said: dict[str, set[Removal | None]] = {}
    unread: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        for pattern, outcome in patterns:
            match = pattern.fullmatch(line)
            if match is not None:
                job_id = match["id"]
                if job_id not in asked:
                    raise OutputError(f"removing {len(asked)} jobs answered {line[:200]!r}")
                said.setdefault(job_id, set()).add(outcome)
                break
        else:
            # a line no pattern reads decides nothing, and no id it names is clear
            unread.append(line)
            for word in re.split(r"[\s\"':,.;()]+", line):
                if word in asked:
                    said.setdefault(word, set()).add(None)
    clear: dict[str, Removal] = {}
    for job_id, outcomes in said.items():
        only = next(iter(outcomes)) if len(outcomes) == 1 else None
        if only is not None:
            clear[job_id] = only
    return RemovalLines(clear, set(said) - set(clear), unread)
