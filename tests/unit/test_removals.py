"""Removals in bulk (sites/removals.py): many drones, one qdel/scancel, an outcome per id.

The executor here answers each id the way the real Grid Engine and SLURM do
(tests/fixtures/sge/qdel-*, tests/fixtures/slurm/scancel-*); the fixture tests below read
the recorded answers themselves. tests/integration/test_batch_systems.py removes real jobs.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from tardis.exceptions.executorexceptions import CommandExecutionFailure, ExecutorFailure
from tardis.exceptions.tardisexceptions import TardisResourceStatusUpdateFailed
from tardis.utilities.attributedict import AttributeDict

from tardis_sge_dask.sites import listing
from tardis_sge_dask.sites.batchsite import OutputError
from tardis_sge_dask.sites.removals import Removal, RemovalCoalescer
from tardis_sge_dask.sites.sge import SGEAdapter
from tardis_sge_dask.sites.slurm import SlurmBatchAdapter
from tests.conftest import FIXTURES
from tests.helpers.tardis_config import drone, make_adapter, site_section, two_machine_type_sge

SGE = FIXTURES / "sge"
SLURM = FIXTURES / "slurm"
LOGGER = "cobald.runtime.tardis_sge_dask"


@pytest.fixture
def pilot(tmp_path: Path) -> Path:
    script = tmp_path / "pilot.sh"
    script.write_text("#!/bin/sh\necho pilot body\n")
    return script


class FakeQdel:
    """Answers ``qdel ID ...`` as Grid Engine does: a line per id, exit 1 if any failed."""

    def __init__(self, unknown: frozenset[str] = frozenset(), delay: float = 0.01):
        self.unknown = unknown
        self.delay = delay
        self.commands: list[list[str]] = []
        self.running = 0
        self.most_at_once = 0
        #: replaces the whole answer: an exception to raise, or (stdout, exit code)
        self.answer: BaseException | tuple[str, int] | None = None

    async def run_command(self, command: str, stdin_input: str | None = None):
        argv = command.split()
        self.commands.append(argv)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.running -= 1
        if isinstance(self.answer, BaseException):
            raise self.answer
        if self.answer is not None:
            stdout, code = self.answer
        else:
            stdout = "".join(
                f'denied: job "{job_id}" does not exist\n'
                if job_id in self.unknown
                else f"root has registered the job {job_id} for deletion\n"
                for job_id in argv[1:]
            )
            code = 1 if self.unknown & set(argv[1:]) else 0
        if code:
            raise CommandExecutionFailure(
                message="failed", exit_code=code, stdout=stdout.strip(), stderr=""
            )
        return AttributeDict(stdout=stdout.strip(), stderr="", exit_code=0)

    def ids(self) -> list[str]:
        return [job_id for argv in self.commands for job_id in argv[1:]]


def sge(pilot: Path, executor, **site_keys) -> SGEAdapter:
    section = site_section(str(pilot), ParallelEnvironment="smp")
    section.update(executor=executor, **site_keys)
    return make_adapter(SGEAdapter, "SGE", section)


def slurm(pilot: Path, executor) -> SlurmBatchAdapter:
    section = site_section(str(pilot))
    section["executor"] = executor
    return make_adapter(SlurmBatchAdapter, "SlurmBatch", section)


def drones(job_ids) -> list[AttributeDict]:
    return [drone(f"testsite-{int(job_id):010d}", job_id=str(job_id)) for job_id in job_ids]


async def terminate_each(adapter, attributes: list[AttributeDict]) -> list[BaseException | None]:
    """Every drone's terminate at once, as TARDIS runs them (inside handle_exceptions)."""

    async def one(drone_attributes: AttributeDict) -> None:
        with adapter.handle_exceptions():
            await adapter.terminate_resource(drone_attributes)

    return await asyncio.gather(*(one(a) for a in attributes), return_exceptions=True)


def outcome_lines(caplog) -> dict[str, str]:
    """job id -> what the drone's log line said (one line per drone)."""
    said: dict[str, str] = {}
    for record in caplog.records:
        for outcome in ("removal requested", "already gone"):
            if record.getMessage().endswith(f"): {outcome}"):
                job_id = record.getMessage().split(" job ")[1].split(")")[0]
                assert job_id not in said, f"two lines for job {job_id}"
                said[job_id] = outcome
    return said


# ----------------------------------------------------------------- many in one
async def test_fifty_drones_removed_at_once_share_a_handful_of_qdel(pilot, caplog):
    executor = FakeQdel()
    adapter = sge(pilot, executor)
    many = drones(range(1000, 1050))
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert await terminate_each(adapter, many) == [None] * 50
    assert len(executor.commands) <= 2
    assert sorted(executor.ids()) == sorted(str(job_id) for job_id in range(1000, 1050))
    assert outcome_lines(caplog) == {
        str(job_id): "removal requested" for job_id in range(1000, 1050)
    }
    # one DEBUG line per bulk: how many ids, how long
    bulks = [r.getMessage() for r in caplog.records if "qdel of " in r.getMessage()]
    assert bulks and all(line.startswith("testsite: qdel of ") for line in bulks)
    assert sum(int(line.split("qdel of ")[1].split()[0]) for line in bulks) == 50
    assert adapter.removal_commands == len(executor.commands)


async def test_a_full_bulk_goes_at_once_and_each_bulk_holds_one_slot(pilot):
    executor = FakeQdel(delay=0.05)
    adapter = sge(pilot, executor)
    adapter._removal.size = 20
    adapter._removal.window = 3600  # only full bulks can go out before the end
    many = drones(range(2000, 2060))
    assert await terminate_each(adapter, many) == [None] * 60
    assert [len(argv) - 1 for argv in executor.commands] == [20, 20, 20]
    assert len(set(executor.ids())) == 60
    assert executor.most_at_once <= listing.DRONE_COMMANDS_AT_ONCE


async def test_machine_types_of_a_site_share_the_bulk(pilot):
    executor = FakeQdel()
    small, large = two_machine_type_sge(str(pilot), executor)
    await asyncio.gather(
        small.terminate_resource(drone(job_id="11")),
        large.terminate_resource(drone("testsite-large", job_id="12")),
    )
    assert executor.commands == [["qdel", "11", "12"]]


async def test_an_id_asked_for_twice_is_sent_once_and_both_get_its_outcome(pilot):
    executor = FakeQdel()
    adapter = sge(pilot, executor)
    same = drones([7, 7])
    assert await terminate_each(adapter, same) == [None, None]
    assert executor.commands == [["qdel", "7"]]


# -------------------------------------------------------------- outcome per id
async def test_a_job_that_does_not_exist_is_gone_for_its_drone_only(pilot, caplog):
    executor = FakeQdel(unknown=frozenset({"31"}))
    adapter = sge(pilot, executor)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert await terminate_each(adapter, drones([30, 31, 32])) == [None] * 3
    assert executor.commands == [["qdel", "30", "31", "32"]]
    assert outcome_lines(caplog) == {
        "30": "removal requested",
        "31": "already gone",
        "32": "removal requested",
    }


async def test_an_id_the_answer_is_silent_about_is_retried_and_the_others_are_not(pilot, caplog):
    executor = FakeQdel()
    # Grid Engine named 40 and 42, not 41 (a truncated answer): 41 must not pass for removed
    executor.answer = (
        "root has registered the job 40 for deletion\nroot has deleted job 42\n",
        0,
    )
    adapter = sge(pilot, executor)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        errors = await terminate_each(adapter, drones([40, 41, 42]))
    assert errors[0] is None and errors[2] is None
    assert isinstance(errors[1], TardisResourceStatusUpdateFailed)
    assert outcome_lines(caplog) == {"40": "removal requested", "42": "removal requested"}


@pytest.mark.parametrize(
    "answer",
    [
        ("garbage \x00\x01 from a broken pipe", 1),
        ("", 0),  # no line at all: nothing is confirmed
        ((SGE / "qstat-j-unreachable.stderr").read_text(), 1),
        # an answer about other jobs is not about these
        ("root has registered the job 99 for deletion\n" * 3, 0),
    ],
    ids=["garbled", "empty", "qmaster-unreachable", "other-jobs"],
)
async def test_an_unreadable_answer_retries_every_drone_of_the_bulk(pilot, caplog, answer):
    executor = FakeQdel()
    executor.answer = answer
    adapter = sge(pilot, executor)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        errors = await terminate_each(adapter, drones([50, 51, 52]))
    assert all(isinstance(error, TardisResourceStatusUpdateFailed) for error in errors), errors
    assert outcome_lines(caplog) == {}


@pytest.mark.parametrize(
    "failure",
    [
        TimeoutError(),
        ExecutorFailure("connection lost", executor=None),
        ConnectionResetError("reset by peer"),
    ],
    ids=["timeout", "executor-failure", "connection-reset"],
)
async def test_a_failed_command_retries_every_drone_of_the_bulk(pilot, failure):
    executor = FakeQdel()
    executor.answer = failure
    adapter = sge(pilot, executor, command_timeout=5)
    errors = await terminate_each(adapter, drones([60, 61, 62]))
    assert all(isinstance(error, TardisResourceStatusUpdateFailed) for error in errors), errors
    # the next attempt is a new command, and then they go
    executor.answer = None
    assert await terminate_each(adapter, drones([60, 61, 62])) == [None] * 3
    assert len(executor.commands) == 2


async def test_a_command_that_outlives_the_timeout_retries_every_drone(pilot):
    executor = FakeQdel(delay=5)
    adapter = sge(pilot, executor, command_timeout=1)
    errors = await terminate_each(adapter, drones([70, 71]))
    assert all(isinstance(error, TardisResourceStatusUpdateFailed) for error in errors), errors


# -------------------------------------------------------------- cancelled callers
async def test_a_cancelled_caller_does_not_hang_the_others(pilot):
    executor = FakeQdel(delay=0.2)
    adapter = sge(pilot, executor)
    tasks = [
        asyncio.create_task(adapter.terminate_resource(attributes))
        for attributes in drones([80, 81, 82, 83])
    ]
    await asyncio.sleep(0.1)  # inside the window: 80 gives up before the command
    tasks[0].cancel()
    await asyncio.sleep(0.5)  # the command runs now: 81 gives up during it
    tasks[1].cancel()
    done = await asyncio.wait_for(asyncio.gather(*tasks[2:]), timeout=5)
    assert done == [None, None]
    assert tasks[0].cancelled() and tasks[1].cancelled()
    # 80 withdrew before the command, so it was not sent
    assert executor.commands == [["qdel", "81", "82", "83"]]


async def test_a_bulk_without_an_outcome_for_an_id_fails_that_id_only():
    async def command(job_ids: list[str]):
        return {"1": Removal.GONE}

    coalescer = RemovalCoalescer(command, asyncio.Lock, window=0.01)
    results = await asyncio.gather(coalescer("1"), coalescer("2"), return_exceptions=True)
    assert results[0] is Removal.GONE
    assert isinstance(results[1], LookupError)


# ------------------------------------------------------------ SLURM, scancel
class FakeScancel(FakeQdel):
    """Answers ``scancel -v ID ...`` as SLURM 22.05 does (scancel-v-bulk.*): a line for
    each id it sends a cancel for, then one for each that failed, exit code 0 all the same."""

    async def run_command(self, command: str, stdin_input: str | None = None):
        argv = command.split()
        self.commands.append(argv)
        await asyncio.sleep(self.delay)
        if isinstance(self.answer, BaseException):
            raise self.answer
        ids = [word for word in argv[1:] if word.isdigit()]
        if self.answer is not None:
            stderr, code = self.answer
        else:
            stderr = "".join(f"scancel: Terminating job {job_id}\n" for job_id in ids)
            stderr += "".join(
                f"scancel: error: Kill job error on job id {job_id}: Invalid job id specified\n"
                for job_id in ids
                if job_id in self.unknown
            )
            code = 0
        if code:
            raise CommandExecutionFailure(
                message="failed", exit_code=code, stdout="", stderr=stderr
            )
        return AttributeDict(stdout="", stderr=stderr.strip(), exit_code=0)


async def test_scancel_of_many_drones_is_one_command_with_an_outcome_each(pilot, caplog):
    executor = FakeScancel(unknown=frozenset({"91"}))
    adapter = slurm(pilot, executor)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert await terminate_each(adapter, drones([90, 91, 92])) == [None] * 3
    assert executor.commands == [["scancel", "-v", "90", "91", "92"]]
    assert outcome_lines(caplog) == {
        "90": "removal requested",
        "91": "already gone",
        "92": "removal requested",
    }


@pytest.mark.parametrize(
    "answer",
    [
        ("scancel: error: Unable to contact slurm controller (connect failure)", 1),
        # exit 0, but a line nobody reads: "Terminating" (sent, not answered) confirms nothing
        ("scancel: Terminating job 93\nscancel: Terminating job 94\nscancel: fatal: new", 0),
        # killed after sending: the same
        ("scancel: Terminating job 93\nscancel: Terminating job 94", 137),
        # plain scancel of several ids says nothing even about unknown ones (recorded)
        ("", 0),
    ],
    ids=["no-controller", "unreadable", "killed", "silent"],
)
async def test_scancel_confirms_only_what_it_sent_in_a_clean_answer(pilot, caplog, answer):
    executor = FakeScancel()
    executor.answer = answer
    adapter = slurm(pilot, executor)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        errors = await terminate_each(adapter, drones([93, 94]))
    assert all(isinstance(error, TardisResourceStatusUpdateFailed) for error in errors), errors
    assert outcome_lines(caplog) == {}


async def test_scancel_error_of_one_id_retries_that_drone_only(pilot, caplog):
    executor = FakeScancel()
    executor.answer = (
        "scancel: Terminating job 95\nscancel: Terminating job 96\nscancel: Terminating job 97\n"
        "scancel: error: Kill job error on job id 96: Access/permission denied\n"
        "scancel: error: Kill job error on job id 97: Job/step already completing or completed",
        0,
    )
    adapter = slurm(pilot, executor)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        errors = await terminate_each(adapter, drones([95, 96, 97]))
    assert errors[0] is None and errors[2] is None
    assert isinstance(errors[1], TardisResourceStatusUpdateFailed)
    assert outcome_lines(caplog) == {"95": "removal requested", "97": "already gone"}


# ------------------------------------------------- the recorded answers, parsed
def recorded(directory: Path, name: str) -> tuple[list[str], str, str, int]:
    """argv, stdout, stderr and exit code of a recorded removal (record-removal.sh)."""
    return (
        (directory / f"{name}.argv").read_text().split(),
        (directory / f"{name}.stdout").read_text(),
        (directory / f"{name}.stderr").read_text(),
        int((directory / f"{name}.exit").read_text()),
    )


def test_qdel_of_queued_unknown_deleted_and_draining_jobs_recorded(pilot):
    argv, stdout, stderr, code = recorded(SGE, "qdel-bulk")
    adapter = sge(pilot, FakeQdel())
    # two queued, one never given out, one deleted before, one in deletion, one queued
    queued_a, queued_b, never, deleted, draining, queued_c = argv[1:]
    assert adapter.terminate_command(argv[1:]) == argv
    assert code == 1 and stderr == ""
    assert adapter.parse_removal(argv[1:], stdout, stderr, code) == {
        queued_a: Removal.REMOVED,
        queued_b: Removal.REMOVED,
        never: Removal.GONE,
        deleted: Removal.GONE,
        draining: Removal.REMOVED,  # its pilot got the -notify warning: on its way out
        queued_c: Removal.REMOVED,
    }
    # one id left out of the same answer: that id is not clear, the others are
    lines = [line for line in stdout.splitlines() if queued_b not in line]
    assert queued_b not in adapter.parse_removal(argv[1:], "\n".join(lines), stderr, code)


def test_qdel_of_a_running_job_recorded(pilot):
    argv, stdout, stderr, code = recorded(SGE, "qdel-running")
    adapter = sge(pilot, FakeQdel())
    assert adapter.parse_removal(argv[1:], stdout, stderr, code) == {argv[1]: Removal.REMOVED}


def test_qdel_without_a_qmaster_recorded_says_nothing_about_any_id(pilot):
    argv, stdout, stderr, code = recorded(SGE, "qdel-unreachable")
    adapter = sge(pilot, FakeQdel())
    assert code == 1
    assert adapter.parse_removal(argv[1:], stdout, stderr, code) == {}


def test_an_answer_about_a_job_not_asked_about_is_refused(pilot):
    argv, stdout, stderr, code = recorded(SGE, "qdel-bulk")
    with pytest.raises(OutputError):
        sge(pilot, FakeQdel()).parse_removal(argv[1:3], stdout, stderr, code)
    argv, stdout, stderr, code = recorded(SLURM, "scancel-v-bulk")
    with pytest.raises(OutputError):
        slurm(pilot, FakeScancel()).parse_removal(argv[2:4], stdout, stderr, code)


def test_scancel_v_of_pending_unknown_completed_cancelled_and_running_jobs_recorded(pilot):
    argv, stdout, stderr, code = recorded(SLURM, "scancel-v-bulk")
    adapter = slurm(pilot, FakeScancel())
    assert argv[:2] == ["scancel", "-v"]
    pending_a, pending_b, never, completed, cancelled, running = argv[2:]
    assert adapter.terminate_command(argv[2:]) == argv
    assert code == 0 and stdout == ""
    assert adapter.parse_removal(argv[2:], stdout, stderr, code) == {
        pending_a: Removal.REMOVED,
        pending_b: Removal.REMOVED,
        never: Removal.GONE,
        completed: Removal.GONE,
        cancelled: Removal.GONE,
        running: Removal.REMOVED,
    }
    # its "Terminating" line alone, without the error line that followed: not gone, and
    # not clear either when the answer was cut short (killed)
    cut = "\n".join(line for line in stderr.splitlines() if f"job id {never}:" not in line)
    assert adapter.parse_removal(argv[2:], stdout, cut, 0)[never] is Removal.REMOVED
    assert never not in adapter.parse_removal(argv[2:], stdout, cut, 137)


def test_plain_scancel_of_several_ids_recorded_is_silent_even_about_unknown_ones(pilot):
    # why the adapter runs scancel -v: without it nothing tells an unknown id from a
    # cancelled one, so this answer confirms no id
    argv, stdout, stderr, code = recorded(SLURM, "scancel-quiet-bulk")
    assert "999999" in argv and (stdout, stderr, code) == ("", "", 0)
    adapter = slurm(pilot, FakeScancel())
    assert adapter.parse_removal(argv[1:], stdout, stderr, code) == {}
