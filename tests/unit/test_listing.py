"""The site's cached job listing (sites/listing.py) as the SGE and SLURM adapters use it.

One listing command answers every drone of a site within ``listing_max_age``; a failed or
unreadable one raises for every drone that waited on it and never reads as "no jobs".
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from tardis.exceptions.executorexceptions import CommandExecutionFailure
from tardis.interfaces.siteadapter import ResourceStatus
from tardis.utilities.attributedict import AttributeDict

from tardis_sge_dask.sites import listing
from tardis_sge_dask.sites.batchsite import OutputError
from tardis_sge_dask.sites.sge import SGEAdapter
from tardis_sge_dask.sites.slurm import SlurmBatchAdapter
from tests.conftest import FIXTURES
from tests.helpers.tardis_config import drone, make_adapter, site_section

EMPTY = (FIXTURES / "sge" / "qstat-empty.xml").read_text()
JOB_UNKNOWN = (FIXTURES / "sge" / "qstat-j-unknown.stderr").read_text()
QACCT_UNKNOWN = (FIXTURES / "sge" / "qacct-unknown.stderr").read_text()


def qstat_xml(jobs: dict[str, str]) -> str:
    """A ``qstat -xml`` answer listing pending jobs, job id -> job name."""
    entries = "".join(
        '    <job_list state="pending">\n'
        f"      <JB_job_number>{job_id}</JB_job_number>\n"
        f"      <JB_name>{name}</JB_name>\n"
        "      <state>qw</state>\n"
        "    </job_list>\n"
        for job_id, name in jobs.items()
    )
    return EMPTY.replace("  <job_info>\n", f"  <job_info>\n{entries}", 1)


def failure(stderr: str) -> CommandExecutionFailure:
    return CommandExecutionFailure(message="failed", exit_code=1, stdout="", stderr=stderr)


class FakeGridEngine:
    """An executor answering like Grid Engine, counting commands and their concurrency."""

    def __init__(self, listing: str | BaseException, delay: float = 0.0):
        self.listing = listing
        self.delay = delay
        self.commands: list[str] = []
        self.running = 0
        self.most_at_once = 0
        self.next_job = 1000

    async def run_command(self, command: str, stdin_input: str | None = None):
        self.commands.append(command)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(self.delay)
            argv = command.split()
            if argv[0] == "qsub":
                self.next_job += 1
                return AttributeDict(stdout=f"{self.next_job}\n", stderr="", exit_code=0)
            if argv[:2] == ["qstat", "-xml"]:
                if isinstance(self.listing, BaseException):
                    raise self.listing
                return AttributeDict(stdout=self.listing, stderr="", exit_code=0)
            if argv[:2] == ["qstat", "-j"]:
                raise failure(JOB_UNKNOWN.replace("99999", argv[2]))
            if argv[0] == "qacct":
                raise failure(QACCT_UNKNOWN)
            raise AssertionError(f"unexpected command {command}")
        finally:
            self.running -= 1

    def count(self, prefix: str) -> int:
        return sum(command.startswith(prefix) for command in self.commands)


@pytest.fixture
def pilot(tmp_path: Path) -> Path:
    script = tmp_path / "pilot.sh"
    script.write_text("#!/bin/sh\necho pilot body\n")
    return script


@pytest.fixture
def clock(monkeypatch):
    """The listing's clock, moved by hand: ages without waiting."""
    now = [1000.0]
    monkeypatch.setattr(listing, "clock", lambda: now[0])
    return now


def sge(pilot: Path, executor, max_age: float = 60, **site_keys) -> SGEAdapter:
    section = site_section(str(pilot), ParallelEnvironment="smp")
    section.update(executor=executor, listing_max_age=max_age, **site_keys)
    return make_adapter(SGEAdapter, "SGE", section)


def drones(count: int) -> list[AttributeDict]:
    return [drone(f"testsite-{index:010d}", job_id=str(index + 1)) for index in range(count)]


def listed(count: int) -> str:
    return qstat_xml({str(index + 1): f"testsite-{index:010d}" for index in range(count)})


async def test_every_drone_asking_within_the_window_shares_one_listing(pilot, clock):
    executor = FakeGridEngine(listed(250), delay=0.01)
    adapter = sge(pilot, executor)
    many = drones(250)
    # at once (a heartbeat burst) and then one after another (heartbeats spread out)
    statuses = await asyncio.gather(*(adapter.resource_status(d) for d in many))
    for attributes in many:
        clock[0] += 0.1
        statuses.append(await adapter.resource_status(attributes))
    assert {status.resource_status for status in statuses} == {ResourceStatus.Booting}
    assert executor.commands == ["qstat -xml"]
    assert adapter.listing_calls == 1


async def test_every_machine_type_of_a_site_shares_the_listing(pilot, clock):
    executor = FakeGridEngine(listed(2))
    section = site_section(str(pilot), ParallelEnvironment="smp")
    section["MachineTypes"].append("large")
    section["MachineMetaData"]["large"] = section["MachineMetaData"]["small"]
    section["MachineTypeConfiguration"]["large"] = section["MachineTypeConfiguration"]["small"]
    section.update(executor=executor, listing_max_age=60)
    small = make_adapter(SGEAdapter, "SGE", section)
    large = SGEAdapter(machine_type="large", site_name="testsite")
    first, second = drones(2)
    await small.resource_status(first)
    await large.resource_status(second)
    assert executor.count("qstat -xml") == 1


async def test_an_answer_older_than_the_maximum_age_is_taken_again(pilot, clock):
    executor = FakeGridEngine(listed(1))
    adapter = sge(pilot, executor, max_age=10)
    (attributes,) = drones(1)
    await adapter.resource_status(attributes)
    clock[0] += 10
    await adapter.resource_status(attributes)
    assert executor.count("qstat -xml") == 1
    executor.listing = listed(1).replace("<state>qw</state>", "<state>r</state>")
    clock[0] += 0.5
    status = await adapter.resource_status(attributes)
    assert status.resource_status is ResourceStatus.Running
    assert executor.count("qstat -xml") == 2


async def test_a_failed_listing_fails_every_waiting_drone_and_the_next_question_retries(
    pilot, clock
):
    executor = FakeGridEngine(failure("error: commlib error: can't connect"), delay=0.01)
    adapter = sge(pilot, executor)
    many = drones(20)
    results = await asyncio.gather(
        *(adapter.resource_status(d) for d in many), return_exceptions=True
    )
    assert all(isinstance(result, CommandExecutionFailure) for result in results)
    assert executor.commands == ["qstat -xml"]  # nothing was confirmed gone, or asked about
    executor.listing = listed(20)
    statuses = await asyncio.gather(*(adapter.resource_status(d) for d in many))
    assert {status.resource_status for status in statuses} == {ResourceStatus.Booting}
    assert executor.commands == ["qstat -xml", "qstat -xml"]


@pytest.mark.parametrize(
    "garbage",
    [
        "",  # qstat killed before it printed anything
        listed(20)[: len(listed(20)) // 2],  # cut off in the middle
        "<html><body>maintenance</body></html>",
        "error: can't unpack gdi request\n",
    ],
    ids=["empty", "truncated", "other-xml", "text"],
)
async def test_a_garbled_listing_never_means_all_gone(pilot, clock, garbage):
    executor = FakeGridEngine(garbage)
    adapter = sge(pilot, executor, accounting_grace=0)
    many = drones(20)
    for _ in range(2):
        results = await asyncio.gather(
            *(adapter.resource_status(d) for d in many), return_exceptions=True
        )
        assert all(isinstance(result, OutputError) for result in results)
    # an unreadable answer is not kept: each round asked again, and no job was looked up
    assert executor.commands == ["qstat -xml", "qstat -xml"]


async def test_a_drone_cancelled_while_waiting_does_not_cancel_the_others(pilot, clock):
    executor = FakeGridEngine(listed(3), delay=0.05)
    adapter = sge(pilot, executor)
    first, *others = drones(3)
    cancelled = asyncio.ensure_future(adapter.resource_status(first))
    waiting = [asyncio.ensure_future(adapter.resource_status(d)) for d in others]
    await asyncio.sleep(0.01)
    cancelled.cancel()
    statuses = await asyncio.gather(*waiting)
    assert {status.resource_status for status in statuses} == {ResourceStatus.Booting}
    assert executor.count("qstat -xml") == 1


async def test_a_job_submitted_after_the_cached_answer_is_not_taken_for_missing(pilot, clock):
    executor = FakeGridEngine(listed(0))
    adapter = sge(pilot, executor, accounting_grace=0)
    adapter._adoptable = {}  # no earlier daemon's jobs to adopt
    await adapter.resource_status(drone("testsite-other", job_id="1"))  # caches the answer
    clock[0] += 1
    new = drone("testsite-new")
    submitted = await adapter.deploy_resource(new)
    new["remote_resource_uuid"] = submitted.remote_resource_uuid
    executor.listing = qstat_xml({submitted.remote_resource_uuid: "testsite-new"})
    clock[0] += 1
    status = await adapter.resource_status(new)
    assert status.resource_status is ResourceStatus.Booting
    assert executor.count("qstat -xml") == 2
    assert executor.count(f"qstat -j {submitted.remote_resource_uuid}") == 0
    # listed once, it reads the cached answer again like every other drone
    await adapter.resource_status(new)
    assert executor.count("qstat -xml") == 2


async def test_the_listing_is_parsed_off_the_event_loop(pilot, clock):
    executor = FakeGridEngine(listed(3))
    adapter = sge(pilot, executor)
    threads = []
    parse = adapter.parse_listing

    def recording_parse(stdout: str):
        threads.append(threading.get_ident())
        return parse(stdout)

    adapter._listing._parse = recording_parse
    await adapter.resource_status(drones(1)[0])
    assert threads and threading.get_ident() not in threads


async def test_missing_jobs_are_confirmed_gone_a_few_at_a_time(pilot, clock):
    # a valid but empty listing: every drone asks qstat -j and qacct about its job; at
    # 10,000 drones one process each at once would be thousands of processes
    executor = FakeGridEngine(EMPTY, delay=0.005)
    adapter = sge(pilot, executor, accounting_grace=0)
    many = drones(60)
    statuses = await asyncio.gather(*(adapter.resource_status(d) for d in many))
    # the rule stands: each job was confirmed unknown to Grid Engine before it counted as gone
    assert {status.resource_status for status in statuses} == {ResourceStatus.Deleted}
    assert executor.count("qstat -j ") == 60
    assert executor.count("qacct -j ") == 60
    assert executor.most_at_once <= listing.DRONE_COMMANDS_AT_ONCE


async def test_a_burst_of_submissions_and_removals_runs_a_few_commands_at_a_time(pilot, clock):
    # demand 0 -> 1,000 is a qsub per drone at once, demand 0 a qdel per drone; unbounded
    # (measured on the real Grid Engine) a quarter of 1,000 qsub timed out, their job ids lost
    executor = FakeGridEngine(EMPTY, delay=0.005)
    adapter = sge(pilot, executor)
    adapter._adoptable = {}  # no earlier daemon's jobs to adopt
    new = [drone(f"testsite-{index:010d}") for index in range(60)]
    submitted = await asyncio.gather(*(adapter.deploy_resource(d) for d in new))
    assert len({result.remote_resource_uuid for result in submitted}) == 60
    assert executor.most_at_once <= listing.DRONE_COMMANDS_AT_ONCE
    executor.most_at_once = 0
    for attributes, result in zip(new, submitted, strict=True):
        attributes["remote_resource_uuid"] = result.remote_resource_uuid
    executor.run_command = removal_counting(executor)
    await asyncio.gather(*(adapter.terminate_resource(d) for d in new))
    # the removals share one qdel (sites/removals.py), which holds one slot
    assert executor.count("qdel ") == 1
    removed = [job_id for command in executor.commands[-1:] for job_id in command.split()[1:]]
    assert sorted(removed) == sorted(result.remote_resource_uuid for result in submitted)
    assert executor.most_at_once <= listing.DRONE_COMMANDS_AT_ONCE


def removal_counting(executor: FakeGridEngine):
    """The executor's run_command, answering qdel as Grid Engine does."""
    answer = executor.run_command

    async def run_command(command: str, stdin_input: str | None = None):
        if not command.startswith("qdel "):
            return await answer(command, stdin_input)
        executor.commands.append(command)
        executor.running += 1
        executor.most_at_once = max(executor.most_at_once, executor.running)
        try:
            await asyncio.sleep(executor.delay)
        finally:
            executor.running -= 1
        return AttributeDict(
            stdout="".join(
                f"root has registered the job {job_id} for deletion\n"
                for job_id in command.split()[1:]
            )
        )

    return run_command


async def test_slurm_drones_share_one_squeue(pilot, clock):
    class FakeSlurm:
        def __init__(self) -> None:
            self.commands: list[str] = []

        async def run_command(self, command: str, stdin_input: str | None = None):
            self.commands.append(command)
            await asyncio.sleep(0.01)
            lines = "".join(f"{index + 1}|PENDING|testsite-{index:010d}\n" for index in range(150))
            return AttributeDict(stdout=lines, stderr="", exit_code=0)

    executor = FakeSlurm()
    section = site_section(str(pilot))
    section.update(executor=executor, listing_max_age=60)
    adapter = make_adapter(SlurmBatchAdapter, "SlurmBatch", section)
    many = drones(150)
    statuses = await asyncio.gather(*(adapter.resource_status(d) for d in many))
    for attributes in many:
        statuses.append(await adapter.resource_status(attributes))
    assert {status.resource_status for status in statuses} == {ResourceStatus.Booting}
    assert [command.split()[0] for command in executor.commands] == ["squeue"]


async def test_the_condor_q_answer_is_read_off_the_event_loop(monkeypatch):
    # the demand source runs once per controller interval, but thousands of queued ads take
    # seconds to read (measured: 10,000 ads, 0.45 s), on the loop every drone shares
    from tardis_sge_dask.demand import htcondor

    answer = next((FIXTURES / "htcondor").glob("recorded-*/condor_q-demand-long-busy.stdout"))
    threads = []
    read = htcondor.read_demand

    def recording_read(text: str, output_format: str = "long"):
        threads.append(threading.get_ident())
        return read(text, output_format)

    class Schedd:
        async def run_command(self, command: str):
            return AttributeDict(stdout=answer.read_text(), stderr="", exit_code=0)

    monkeypatch.setattr(htcondor, "read_demand", recording_read)
    snapshot = await htcondor.CondorQueueDemand(executor=Schedd()).poll()
    assert snapshot.waiting_jobs > 0
    assert threads and threading.get_ident() not in threads
