"""SGE adapter against outputs recorded from the real Son of Grid Engine 8.1.9 here."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from tardis.exceptions.executorexceptions import CommandExecutionFailure, ExecutorFailure
from tardis.exceptions.tardisexceptions import (
    TardisAuthError,
    TardisQuotaExceeded,
    TardisResourceStatusUpdateFailed,
    TardisTimeout,
)
from tardis.interfaces.siteadapter import ResourceStatus
from tardis.utilities.executors.shellexecutor import ShellExecutor

from tardis_sge_dask.sites.batchsite import OutputError
from tardis_sge_dask.sites.jobscript import JobScriptError, render_job_script
from tardis_sge_dask.sites.settings import SiteConfigError
from tardis_sge_dask.sites.sge import SGEAdapter
from tests.conftest import FIXTURES
from tests.helpers.standins import HOSTILE, exported, recording_command
from tests.helpers.tardis_config import (
    RecordingExecutor,
    configure,
    drone,
    make_adapter,
    site_section,
    two_machine_type_sge,
)

SGE = FIXTURES / "sge"


@pytest.fixture
def pilot(tmp_path: Path) -> Path:
    script = tmp_path / "pilot.sh"
    script.write_text("#!/bin/sh\necho pilot body\n")
    return script


def adapter_with(pilot: Path, executor=None, site_keys=None, **machine_type_config) -> SGEAdapter:
    section = site_section(str(pilot), ParallelEnvironment="smp", **machine_type_config)
    if executor is not None:
        section["executor"] = executor
    section.update(site_keys or {})
    return make_adapter(SGEAdapter, "SGE", section)


def failure(stderr: str = "", stdout: str = "", exit_code: int = 1) -> CommandExecutionFailure:
    return CommandExecutionFailure(
        message="failed", exit_code=exit_code, stdout=stdout, stderr=stderr
    )


def test_submit_command_carries_every_configured_resource(pilot):
    adapter = adapter_with(
        pilot,
        Queue="idefix.q",
        Walltime="2:00:00",
        Project="physnet",
        LogDirectory="/scratch/drones",
        ExtraOptions=["-l", "arch=lx-amd64"],
    )
    argv, script = adapter.render_submission(drone())
    assert argv == [
        "qsub", "-terse", "-N", "testsite-0123456789", "-S", "/bin/bash",
        "-q", "idefix.q",
        "-pe", "smp", "2",
        "-l", "h_vmem=2048M",  # 4 GB over 2 slots: Grid Engine counts memory per slot
        "-l", "h_rt=7200",
        "-P", "physnet",
        "-notify",
        "-o", "/scratch/drones", "-e", "/scratch/drones",
        "-v", "TardisDroneCores=2", "-v", "TardisDroneMemory=4096",
        "-v", "TardisDroneDisk=10485760", "-v", "TardisDroneUuid=testsite-0123456789",
        "-l", "arch=lx-amd64",
    ]  # fmt: skip
    assert script.startswith("#!/bin/bash\n")
    assert "export PILOT_WALLTIME=7200" in script
    assert "export PILOT_BATCH_SYSTEM=sge" in script
    assert script.rstrip().endswith("echo pilot body")


def test_memory_resource_is_configurable_and_can_be_switched_off(pilot):
    argv, _ = adapter_with(pilot, MemoryResource="mem_free").render_submission(drone())
    assert "mem_free=2048M" in argv
    argv, _ = adapter_with(pilot, MemoryResource=None, Notify=False).render_submission(drone())
    assert not any("h_vmem" in arg for arg in argv)
    assert "-notify" not in argv


@pytest.mark.parametrize("hostile", HOSTILE)
async def test_hostile_values_reach_qsub_verbatim_and_never_a_shell(tmp_path, pilot, hostile):
    canary = tmp_path / "canary"
    value = hostile.format(canary=canary)
    # a stand-in qsub on PATH that records exactly the argv and stdin it was given
    bindir = tmp_path / "bin"
    record = tmp_path / "argv.json"
    recording_command(bindir, "qsub", record)
    adapter = adapter_with(
        pilot,
        executor=ShellExecutor(),
        Queue=value,
        Project=value,
        ExtraOptions=["-ac", value],
        JobEnvironment={"PILOT_DASK_SCHEDULER": value},
    )
    adapter._adoptable = {}  # no listing: the stand-in has no qstat
    os.environ["PATH"] = f"{bindir}:{os.environ['PATH']}"
    try:
        result = await adapter.deploy_resource(drone())
    finally:
        os.environ["PATH"] = os.environ["PATH"].split(":", 1)[1]
    assert result.remote_resource_uuid == "42"
    seen = json.loads(record.read_text())
    assert seen["argv"] == adapter.render_submission(drone())[0][1:]
    assert seen["argv"][seen["argv"].index("-q") + 1] == value
    assert not canary.exists()
    # the job script's settings come back verbatim when bash evaluates them
    assert exported(seen["stdin"], "echo pilot body", "PILOT_DASK_SCHEDULER") == value
    assert not canary.exists()


@pytest.mark.parametrize(
    ("change", "key_path"),
    [
        ({"StartupCommand": None}, "MachineTypeConfiguration.small.StartupCommand"),
        ({"ParallelEnvironment": None}, "MachineTypeConfiguration.small.ParallelEnvironment"),
        ({"Walltime": "two hours"}, "MachineTypeConfiguration.small.Walltime"),
        ({"ExtraOptions": "-l arch=x"}, "MachineTypeConfiguration.small.ExtraOptions"),
        ({"Notify": "yes"}, "MachineTypeConfiguration.small.Notify"),
        ({"MemoryResource": "h vmem"}, "MachineTypeConfiguration.small.MemoryResource"),
    ],
)
def test_broken_keys_are_named(pilot, change, key_path):
    section = site_section(str(pilot), ParallelEnvironment="smp")
    machine_type = section["MachineTypeConfiguration"]["small"]
    for key, value in change.items():
        if value is None:
            machine_type.pop(key)
        else:
            machine_type[key] = value
    with pytest.raises(SiteConfigError) as error:
        make_adapter(SGEAdapter, "SGE", section)
    assert f"testsite.{key_path}" in str(error.value)


@pytest.mark.parametrize("bad", [0, -1, "soon"])
def test_a_bulk_window_must_be_positive(pilot, bad):
    with pytest.raises(SiteConfigError, match=r"testsite\.bulk_delay: expected a positive number"):
        adapter_with(pilot, site_keys={"bulk_delay": bad})


def test_missing_machine_meta_data_is_named(pilot):
    section = site_section(str(pilot), ParallelEnvironment="smp")
    del section["MachineMetaData"]["small"]
    with pytest.raises(SiteConfigError, match=r"testsite\.MachineMetaData\.small"):
        make_adapter(SGEAdapter, "SGE", section)


EXPECTED_STATES = {
    "fx-run": ("r", ResourceStatus.Running),
    "fx-susp": ("s", ResourceStatus.Stopped),
    "fx-pe": ("r", ResourceStatus.Running),
    "fx-array": ("r", ResourceStatus.Running),
    "fx-dr": ("dr", ResourceStatus.Running),
    "fx-eqw": ("Eqw", ResourceStatus.Error),
    "fx-held": ("hqw", ResourceStatus.Booting),
}


def test_every_state_of_the_recorded_listing_is_mapped(pilot):
    adapter = adapter_with(pilot)
    jobs = adapter.parse_listing((SGE / "qstat-states.xml").read_text())
    by_name = {job.name: job for job in jobs.values()}
    assert set(by_name) == set(EXPECTED_STATES)
    for name, (state, status) in EXPECTED_STATES.items():
        assert by_name[name].state == state
        assert adapter.translate_state(state) is status


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("qw", ResourceStatus.Booting), ("hRwq", ResourceStatus.Booting),
        ("t", ResourceStatus.Running), ("Rr", ResourceStatus.Running),
        ("dt", ResourceStatus.Running), ("S", ResourceStatus.Stopped),
        ("T", ResourceStatus.Stopped), ("dqw", ResourceStatus.Deleted),
        ("z", ResourceStatus.Deleted), ("Ehqw", ResourceStatus.Error),
        ("Rsr", ResourceStatus.Stopped), ("X", None), ("", None),
    ],
)  # fmt: skip
def test_state_letters(pilot, state, status):
    assert adapter_with(pilot).translate_state(state) is status


@pytest.mark.parametrize(
    "stdout",
    [
        (SGE / "qstat-states.xml").read_text()[:700],  # truncated mid-document
        "",  # qstat printed nothing: never read as "all jobs gone"
        "error: commlib error: got select error (Connection refused)",
        "<detailed_job_info></detailed_job_info>",
        "<job_info><queue_info><job_list><JB_job_number>x</JB_job_number></job_list>"
        "</queue_info></job_info>",
    ],
)
async def test_unreadable_listings_are_retried_not_fatal(pilot, stdout):
    adapter = adapter_with(pilot, executor=RecordingExecutor({"qstat": stdout}))
    with pytest.raises(TardisResourceStatusUpdateFailed):
        with adapter.handle_exceptions():
            await adapter.resource_status(drone(job_id="2"))


async def test_failing_qstat_is_retried_not_fatal(pilot):
    executor = RecordingExecutor({"qstat": failure("error: commlib error: got select error")})
    adapter = adapter_with(pilot, executor=executor)
    with pytest.raises(TardisResourceStatusUpdateFailed):
        with adapter.handle_exceptions():
            await adapter.resource_status(drone(job_id="2"))


async def test_hanging_qstat_times_out(pilot):
    class Hanging(RecordingExecutor):
        async def run_command(self, command, stdin_input=None):
            await asyncio.sleep(60)

    adapter = adapter_with(pilot, executor=Hanging(), site_keys={"command_timeout": 1})
    with pytest.raises(TardisTimeout):
        with adapter.handle_exceptions():
            await adapter.resource_status(drone(job_id="2"))


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 2222)"),
        ExecutorFailure(description="SSH connection lost", executor=None),
    ],
)
async def test_an_unreachable_submit_host_is_one_line_and_retried(pilot, error, caplog):
    # sshd restarted on the submit host: TARDIS's SSHExecutor reconnects at the next
    # command; until then each command fails like this
    class Unreachable:
        async def run_command(self, command, stdin_input=None):
            raise error

    adapter = adapter_with(pilot, executor=Unreachable())
    with pytest.raises(TardisResourceStatusUpdateFailed):
        with adapter.handle_exceptions():
            await adapter.resource_status(drone(job_id="2"))
    (record,) = caplog.records
    assert record.levelname == "WARNING" and not record.exc_info
    assert record.getMessage().startswith("testsite: cannot reach the submit host to run qstat")


async def test_listed_job_reports_its_state(pilot):
    executor = RecordingExecutor({"qstat": (SGE / "qstat-states.xml").read_text()})
    adapter = adapter_with(pilot, executor=executor)
    assert (
        await adapter.resource_status(drone("fx-held", job_id="3"))
    ).resource_status is ResourceStatus.Booting
    assert (
        await adapter.resource_status(drone("fx-dr", job_id="9"))
    ).resource_status is ResourceStatus.Running


async def test_a_job_id_the_qmaster_gave_to_another_job_is_not_the_drones(pilot, caplog):
    # a qmaster killed uncleanly forgets its last jobs and hands their ids out again: the
    # drone whose job 3 was lost must not take the new job 3 (named fx-held) for its own,
    # neither its state nor, by the same id, its accounting record
    executor = RecordingExecutor({"qstat": (SGE / "qstat-states.xml").read_text()})
    adapter = adapter_with(pilot, executor=executor)
    lost = drone("testsite-0123456789", job_id="3")
    assert (await adapter.resource_status(lost)).resource_status is ResourceStatus.Deleted
    assert (await adapter.resource_status(lost)).resource_status is ResourceStatus.Deleted
    owner = drone("fx-held", job_id="3")
    assert (await adapter.resource_status(owner)).resource_status is ResourceStatus.Booting
    assert not [command for command, _ in executor.commands if not command.startswith("qstat")]
    warnings = [r.getMessage() for r in caplog.records if "reused the id" in r.getMessage()]
    assert len(warnings) == 1  # once per drone, not at every heartbeat
    assert "testsite-0123456789" in warnings[0] and "job 3" in warnings[0]
    assert "'fx-held'" in warnings[0]


async def test_finished_job_is_found_in_the_accounting(pilot):
    executor = RecordingExecutor(
        {
            "qstat": qstat_answers((SGE / "qstat-empty.xml").read_text(), JOB_UNKNOWN),
            "qacct": (SGE / "qacct-exit3.txt").read_text(),
        }
    )
    adapter = adapter_with(pilot, executor=executor)
    status = await adapter.resource_status(drone(job_id="11"))
    assert status.resource_status is ResourceStatus.Deleted
    # once known to have ended, the accounting is not asked again
    await adapter.resource_status(drone(job_id="11"))
    assert sum(command.startswith("qacct") for command, _ in executor.commands) == 1


async def test_job_without_accounting_record_is_gone_only_after_the_grace(pilot):
    unknown = failure((SGE / "qacct-unknown.stderr").read_text())
    listing = (SGE / "qstat-empty.xml").read_text()
    executor = RecordingExecutor({"qstat": qstat_answers(listing, JOB_UNKNOWN), "qacct": unknown})
    adapter = adapter_with(pilot, executor=executor, site_keys={"accounting_grace": 3600})
    with pytest.raises(TardisResourceStatusUpdateFailed):
        await adapter.resource_status(drone(job_id="99999"))
    adapter = adapter_with(pilot, executor=executor, site_keys={"accounting_grace": 0})
    status = await adapter.resource_status(drone(job_id="99999"))
    assert status.resource_status is ResourceStatus.Deleted


def test_accounting_of_a_killed_job_is_a_failure(pilot):
    record = adapter_with(pilot).parse_accounting("12", (SGE / "qacct-killed.txt").read_text())
    assert record.failed and record.exit_status.startswith("137")


async def test_one_listing_per_bulk_window_for_all_drones_and_machine_types(pilot):
    executor = RecordingExecutor({"qstat": (SGE / "qstat-states.xml").read_text()})
    small, large = two_machine_type_sge(str(pilot), executor)
    await asyncio.gather(
        *(small.resource_status(drone("fx-run", job_id="2")) for _ in range(40)),
        *(large.resource_status(drone("fx-pe", job_id="7")) for _ in range(40)),
    )
    assert [command for command, _ in executor.commands] == ["qstat -xml"]


async def test_qdel_of_a_job_that_no_longer_exists_is_not_an_error(pilot):
    # qdel prints this on stdout, with exit code 1
    gone = failure(stdout=(SGE / "qdel-unknown.stdout").read_text())
    adapter = adapter_with(pilot, executor=RecordingExecutor({"qdel": gone}))
    await adapter.terminate_resource(drone(job_id="99999"))
    await adapter.stop_resource(drone(job_id="99999"))


async def test_other_qdel_failures_are_retried(pilot):
    denied = failure("error: commlib error: access denied")
    adapter = adapter_with(pilot, executor=RecordingExecutor({"qdel": denied}))
    with pytest.raises(TardisResourceStatusUpdateFailed):
        with adapter.handle_exceptions():
            await adapter.terminate_resource(drone(job_id="2"))


async def test_rejected_submission_is_retried_not_fatal(pilot):
    rejected = failure((SGE / "qsub-badqueue.stderr").read_text())
    executor = RecordingExecutor({"qsub": rejected, "qstat": (SGE / "qstat-empty.xml").read_text()})
    adapter = adapter_with(pilot, executor=executor)
    with pytest.raises(TardisResourceStatusUpdateFailed):
        with adapter.handle_exceptions():
            await adapter.deploy_resource(drone())


async def test_a_job_submitted_before_a_crash_is_adopted_not_submitted_again(pilot):
    listing = (SGE / "qstat-states.xml").read_text().replace("fx-held", "testsite-0123456789")
    executor = RecordingExecutor({"qstat": listing, "qsub": "77"})
    adapter = adapter_with(pilot, executor=executor)
    assert (await adapter.deploy_resource(drone())).remote_resource_uuid == "3"
    assert not any(command.startswith("qsub") for command, _ in executor.commands)
    # a second drone is submitted normally, and the listing is not taken again
    assert (await adapter.deploy_resource(drone("testsite-other"))).remote_resource_uuid == "77"
    assert sum(command.startswith("qstat") for command, _ in executor.commands) == 1


INJECTED = "\n#$ -t 1-1000\n#$ -v LD_PRELOAD=/tmp/evil.so"


@pytest.mark.parametrize(
    ("where", "key_path"),
    [
        ("site JobEnvironment", "testsite.JobEnvironment.PILOT_TOKEN_FILE"),
        (
            "JobEnvironment",
            "testsite.MachineTypeConfiguration.small.JobEnvironment.PILOT_X509_PROXY",
        ),
        ("Queue", "testsite.MachineTypeConfiguration.small.Queue"),
        ("Project", "testsite.MachineTypeConfiguration.small.Project"),
        ("LogDirectory", "testsite.MachineTypeConfiguration.small.LogDirectory"),
        ("ExtraOptions", "testsite.MachineTypeConfiguration.small.ExtraOptions"),
    ],
)
@pytest.mark.parametrize("control", [INJECTED, "x\r#$ -t 1-9", "x\0y", "x\x1b[2Jy", "x\u2028y"])
def test_control_characters_in_a_value_are_refused_naming_the_key(pilot, where, key_path, control):
    value = f"/etc/drone{control}"
    if where == "site JobEnvironment":
        adapter = lambda: adapter_with(  # noqa: E731
            pilot, site_keys={"JobEnvironment": {"PILOT_TOKEN_FILE": value}}
        )
    elif where == "JobEnvironment":
        adapter = lambda: adapter_with(pilot, JobEnvironment={"PILOT_X509_PROXY": value})  # noqa: E731
    elif where == "ExtraOptions":
        adapter = lambda: adapter_with(pilot, ExtraOptions=["-ac", value])  # noqa: E731
    else:
        adapter = lambda: adapter_with(pilot, **{where: value})  # noqa: E731
    with pytest.raises(SiteConfigError) as error:
        adapter()
    assert error.value.key_path == key_path
    assert "control character" in error.value.problem
    if where == "ExtraOptions":
        assert error.value.problem.startswith("item 1: ")


def test_a_machine_type_name_with_a_line_break_is_refused(pilot):
    section = site_section(str(pilot), ParallelEnvironment="smp")
    name = f"small{INJECTED}"
    section["MachineTypes"] = [name]
    section["MachineMetaData"] = {name: section["MachineMetaData"]["small"]}
    section["MachineTypeConfiguration"] = {name: section["MachineTypeConfiguration"]["small"]}
    configure("SGE", section)
    SGEAdapter._listings.clear()
    with pytest.raises(SiteConfigError, match="control character"):
        SGEAdapter(machine_type=name, site_name="testsite")


def test_no_value_can_start_a_line_of_the_job_script(pilot):
    """Whatever reaches the script is refused or sits after fixed text on its line."""
    with pytest.raises(JobScriptError, match="PILOT_TOKEN_FILE"):
        render_job_script(pilot, {"PILOT_TOKEN_FILE": f"/t{INJECTED}"})
    with pytest.raises(JobScriptError, match="header"):
        render_job_script(pilot, {}, header=f"drone x{INJECTED}")
    values = {"A": "-t 1-1000", "B": "#$ -t 1-1000", "C": "'\"$x"}
    script = render_job_script(pilot, values, header="tardis-sge-dask drone #$ x")
    settings = script.split("echo pilot body")[0].splitlines()
    assert settings[0] == "#!/bin/bash"
    assert all(line.startswith(("# tardis-sge-dask", "export ")) for line in settings[1:])
    assert not any(line.startswith("#$") for line in script.splitlines())


async def test_a_drone_uuid_with_a_control_character_never_reaches_qsub(pilot):
    executor = RecordingExecutor({"qstat": (SGE / "qstat-empty.xml").read_text(), "qsub": "7"})
    adapter = adapter_with(pilot, executor=executor)
    with pytest.raises(TardisResourceStatusUpdateFailed, match="control character"):
        with adapter.handle_exceptions():
            await adapter.deploy_resource(drone(uuid="testsite-0123456789\x0b#$ -t 1-9"))
    assert not any(command.startswith("qsub") for command, _ in executor.commands)


def qstat_answers(listing: str, job: CommandExecutionFailure | str):
    """``qstat -xml`` answers the listing, ``qstat -j ID`` the job (a failure or its text)."""

    def answer(command: str):
        if " -j " not in command:
            return listing
        if job is JOB_UNKNOWN:  # the recorded answer, naming the job asked about
            return failure(JOB_UNKNOWN.stderr.replace("99999", command.split()[-1]))
        return job

    return answer


JOB_UNKNOWN = failure((SGE / "qstat-j-unknown.stderr").read_text())
QMASTER_UNREACHABLE = failure((SGE / "qstat-j-unreachable.stderr").read_text())


@pytest.mark.parametrize("qacct", ["unknown", "exit3"])
async def test_a_job_missing_from_the_listing_that_qstat_j_still_knows_is_never_gone(pilot, qacct):
    # a valid but empty listing (e.g. a qmaster answering in the middle of a restart):
    # neither "no accounting record" nor an older record of the same id may declare the
    # drone gone while Grid Engine still has its job
    executor = RecordingExecutor(
        {
            "qstat": qstat_answers((SGE / "qstat-empty.xml").read_text(), "job_number: 99999"),
            "qacct": failure((SGE / "qacct-unknown.stderr").read_text())
            if qacct == "unknown"
            else (SGE / "qacct-exit3.txt")
            .read_text()
            .replace("jobnumber    11", "jobnumber 99999"),
        }
    )
    adapter = adapter_with(pilot, executor=executor, site_keys={"accounting_grace": 0})
    for _ in range(3):
        with pytest.raises(TardisResourceStatusUpdateFailed, match="sge still has it"):
            await adapter.resource_status(drone(job_id="99999"))
    assert "qstat -j 99999" in [command for command, _ in executor.commands]


async def test_a_job_qstat_j_does_not_know_is_gone_after_the_grace(pilot):
    executor = RecordingExecutor(
        {
            "qstat": qstat_answers((SGE / "qstat-empty.xml").read_text(), JOB_UNKNOWN),
            "qacct": failure((SGE / "qacct-unknown.stderr").read_text()),
        }
    )
    adapter = adapter_with(pilot, executor=executor, site_keys={"accounting_grace": 0})
    status = await adapter.resource_status(drone(job_id="99999"))
    assert status.resource_status is ResourceStatus.Deleted


async def test_an_unreachable_qmaster_never_confirms_a_job_gone(pilot):
    # qstat -j exits 1 for an unknown job, and also when it cannot reach the qmaster
    executor = RecordingExecutor(
        {
            "qstat": qstat_answers((SGE / "qstat-empty.xml").read_text(), QMASTER_UNREACHABLE),
            "qacct": failure((SGE / "qacct-unknown.stderr").read_text()),
        }
    )
    adapter = adapter_with(pilot, executor=executor, site_keys={"accounting_grace": 0})
    with pytest.raises(TardisResourceStatusUpdateFailed):
        with adapter.handle_exceptions():
            await adapter.resource_status(drone(job_id="99999"))


@pytest.mark.parametrize(
    "stdout",
    [
        "<job_info></job_info>",
        "<?xml version='1.0'?><job_info><queue_info/></job_info>",
        "<job_info><queue_info/><job_info/><job_info/></job_info>",
        "<job_info><queue_info/><job_info/><unknown_jobs/></job_info>",
        "<job_info><queue_info><job_list/></queue_info><job_info/></job_info>",
        "<job_info><queue_info><job/></queue_info><job_info/></job_info>",
        "<job_info><queue_info/><job_info><job_list><JB_job_number>٣</JB_job_number>"
        "<state>qw</state></job_list></job_info></job_info>",
        "<job_info><queue_info/><job_info>text</job_info></job_info>",
    ],
)
def test_xml_that_is_not_a_qstat_answer_is_refused(pilot, stdout):
    with pytest.raises(OutputError):
        adapter_with(pilot).parse_listing(stdout)


def test_the_real_empty_answer_is_read_as_no_jobs(pilot):
    assert adapter_with(pilot).parse_listing((SGE / "qstat-empty.xml").read_text()) == {}


class FakeDrone:
    """What TARDIS's ShutDownState and CleanupState use of a drone."""

    def __init__(self, adapter, job_id: str, uuid: str):
        from tardis.agents.siteagent import SiteAgent

        self.site_agent = SiteAgent(adapter)
        self.resource_attributes = drone(uuid, job_id=job_id)
        self.minimum_lifetime = None
        self.states: list[str] = []

    async def set_state(self, state) -> None:
        self.states.append(type(state).__name__)


@pytest.mark.parametrize("state_name", ["ShutDownState", "CleanupState"])
@pytest.mark.parametrize(
    "error",
    [
        TardisAuthError("Keyboard interactive authentication failed: Unexpected Prompt"),
        TardisTimeout("ssh connection timed out"),
        TardisQuotaExceeded("over quota"),
    ],
)
async def test_a_failed_login_while_stopping_a_drone_is_retried_not_fatal(pilot, state_name, error):
    # a failed MFA prompt over SSH raises TardisAuthError from the executor; TARDIS's
    # shutdown and cleanup states let everything but TardisResourceStatusUpdateFailed
    # through, and an exception leaving a drone state stops the whole daemon
    from tardis.resources import dronestates

    qstat = (SGE / "qstat-states.xml").read_text()
    state = getattr(dronestates, state_name)
    # running / queued
    job, name = ("2", "fx-run") if state_name == "ShutDownState" else ("3", "fx-held")
    adapter = adapter_with(pilot, executor=RecordingExecutor({"qstat": qstat, "qdel": error}))
    fake = FakeDrone(adapter, job, name)
    await state.run(fake)
    assert fake.states == [state_name]  # the same state again: retried at the next heartbeat
