"""SLURM adapter against outputs recorded from the real SLURM 22.05 here (record.sh)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from tardis.exceptions.executorexceptions import CommandExecutionFailure, ExecutorFailure
from tardis.exceptions.tardisexceptions import TardisResourceStatusUpdateFailed, TardisTimeout
from tardis.interfaces.siteadapter import ResourceStatus
from tardis.utilities.attributedict import AttributeDict
from tardis.utilities.executors.shellexecutor import ShellExecutor

from tardis_sge_dask.schema.sites import DEFAULT_JOB_PATH
from tardis_sge_dask.sites.batchsite import OutputError
from tardis_sge_dask.sites.settings import SiteConfigError
from tardis_sge_dask.sites.slurm import SLURM_STATES, SlurmBatchAdapter
from tests.conftest import FIXTURES
from tests.helpers.standins import HOSTILE, exported, recording_command
from tests.helpers.tardis_config import RecordingExecutor, drone, make_adapter, site_section

SLURM = FIXTURES / "slurm"


@pytest.fixture
def pilot(tmp_path: Path) -> Path:
    script = tmp_path / "pilot.sh"
    script.write_text("#!/bin/sh\necho pilot body\n")
    return script


def adapter_with(
    pilot: Path, executor=None, site_keys=None, **machine_type_config
) -> SlurmBatchAdapter:
    section = site_section(str(pilot), **machine_type_config)
    if executor is not None:
        section["executor"] = executor
    section.update(site_keys or {})
    adapter = make_adapter(SlurmBatchAdapter, "SlurmBatch", section)
    # a short removal window keeps the grace tests' timing; one window still collects a
    # gather() of removals into one scancel
    adapter._removal.window = 0.01
    return adapter


def failure(stderr: str = "", stdout: str = "", exit_code: int = 1) -> CommandExecutionFailure:
    return CommandExecutionFailure(
        message="failed", exit_code=exit_code, stdout=stdout, stderr=stderr
    )


def fixture(name: str) -> str:
    return (SLURM / name).read_text()


def test_submit_command_carries_every_configured_resource(pilot):
    adapter = adapter_with(
        pilot,
        Partition="debug",
        Account="physnet",
        QOS="opportunistic",
        Walltime="2:00:00",
        LogDirectory="/scratch/drones",
        ExtraOptions=["--constraint=avx2"],
    )
    argv, script = adapter.render_submission(drone())
    assert argv == [
        "env", "-i", f"PATH={DEFAULT_JOB_PATH}",
        "sbatch", "--parsable", "--job-name=testsite-0123456789",
        "--nodes=1", "--ntasks=1", "--cpus-per-task=2", "--no-requeue",
        "--partition=debug", "--account=physnet", "--qos=opportunistic",
        "--mem=4096",  # MachineMetaData Memory is in GB, --mem in MB per node
        "--time=2:00:00",
        "--signal=B:USR2@300",
        "--output=/scratch/drones/%x-%j.out", "--error=/scratch/drones/%x-%j.err",
        "--export=ALL,TardisDroneCores=2,TardisDroneMemory=4096,"
        "TardisDroneDisk=10485760,TardisDroneUuid=testsite-0123456789",
        "--constraint=avx2",
    ]  # fmt: skip
    assert script.startswith("#!/bin/bash\n")
    assert "export PILOT_WALLTIME=7200" in script
    assert "export PILOT_BATCH_SYSTEM=slurm" in script
    assert script.rstrip().endswith("echo pilot body")


@pytest.mark.parametrize("walltime", [7200, "7200", "120:00", "2:00:00"])
def test_walltime_takes_the_same_formats_as_sge(pilot, walltime):
    argv, _ = adapter_with(pilot, Walltime=walltime).render_submission(drone())
    assert "--time=2:00:00" in argv


def test_export_modes_memory_and_warning_can_be_changed(pilot):
    argv, _ = adapter_with(
        pilot, Export="login", RequestMemory=False, WarningTime=0
    ).render_submission(drone())
    assert argv[0] == "sbatch"
    assert argv[-1].startswith("--export=TardisDroneCores=2,")
    assert not any(arg.startswith(("--mem", "--signal")) for arg in argv)
    argv, _ = adapter_with(
        pilot, Export="all", StopSignal="SIGTERM", WarningTime=600, JobPath="/opt/bin"
    ).render_submission(drone())
    assert argv[0] == "sbatch"
    assert "--signal=B:TERM@600" in argv
    argv, _ = adapter_with(pilot, JobPath="/opt/slurm/bin:/usr/bin").render_submission(drone())
    assert argv[:3] == ["env", "-i", "PATH=/opt/slurm/bin:/usr/bin"]


@pytest.mark.parametrize("hostile", HOSTILE)
async def test_hostile_values_reach_sbatch_verbatim_and_never_a_shell(tmp_path, pilot, hostile):
    canary = tmp_path / "canary"
    value = hostile.format(canary=canary)
    # a stand-in sbatch that records exactly the argv, stdin and environment it was given
    bindir = tmp_path / "bin"
    record = tmp_path / "argv.json"
    recording_command(bindir, "sbatch", record)
    adapter = adapter_with(
        pilot,
        executor=ShellExecutor(),
        Partition=value,
        Account=value,
        ExtraOptions=["--comment", value],
        JobEnvironment={"PILOT_DASK_SCHEDULER": value},
        JobPath=f"{bindir}:/usr/bin:/bin",
    )
    adapter._adoptable = {}  # no listing: the stand-in has no squeue
    os.environ["DAEMON_SECRET"] = "do-not-leak"
    try:
        result = await adapter.deploy_resource(drone())
    finally:
        del os.environ["DAEMON_SECRET"]
    assert result.remote_resource_uuid == "42"
    seen = json.loads(record.read_text())
    argv = adapter.render_submission(drone())[0]
    assert seen["argv"] == argv[argv.index("sbatch") + 1 :]
    assert f"--partition={value}" in seen["argv"]
    assert not canary.exists()
    # Export: clean -- sbatch (and so the job) sees none of the daemon's environment
    assert "DAEMON_SECRET" not in seen["env"]
    assert seen["env"]["PATH"] == f"{bindir}:/usr/bin:/bin"
    assert exported(seen["stdin"], "echo pilot body", "PILOT_DASK_SCHEDULER") == value
    assert not canary.exists()


@pytest.mark.parametrize(
    ("change", "key_path"),
    [
        ({"StartupCommand": None}, "MachineTypeConfiguration.small.StartupCommand"),
        ({"Walltime": "two hours"}, "MachineTypeConfiguration.small.Walltime"),
        ({"ExtraOptions": "--qos=x"}, "MachineTypeConfiguration.small.ExtraOptions"),
        ({"StopSignal": "PLEASE"}, "MachineTypeConfiguration.small.StopSignal"),
        ({"StopGrace": -1}, "MachineTypeConfiguration.small.StopGrace"),
        ({"Export": "none"}, "MachineTypeConfiguration.small.Export"),
        ({"RequestMemory": "yes"}, "MachineTypeConfiguration.small.RequestMemory"),
        ({"Walltime": 900, "WarningTime": 900}, "MachineTypeConfiguration.small.WarningTime"),
        ({"WarningTime": 70000}, "MachineTypeConfiguration.small.WarningTime"),
    ],
)
def test_broken_keys_are_named(pilot, change, key_path):
    section = site_section(str(pilot))
    machine_type = section["MachineTypeConfiguration"]["small"]
    for key, value in change.items():
        if value is None:
            machine_type.pop(key)
        else:
            machine_type[key] = value
    with pytest.raises(SiteConfigError) as error:
        make_adapter(SlurmBatchAdapter, "SlurmBatch", section)
    assert f"testsite.{key_path}" in str(error.value)


def test_fractional_cores_are_refused_with_the_key_named(pilot):
    section = site_section(str(pilot))
    section["MachineMetaData"]["small"]["Cores"] = 1.5
    with pytest.raises(SiteConfigError, match=r"testsite\.MachineMetaData\.small\.Cores"):
        make_adapter(SlurmBatchAdapter, "SlurmBatch", section)


EXPECTED_STATES = {
    "fx-completed": ("COMPLETED", ResourceStatus.Deleted),
    "fx-failed": ("FAILED", ResourceStatus.Deleted),
    "fx-cancelled": ("CANCELLED", ResourceStatus.Deleted),
    "fx-timeout": ("TIMEOUT", ResourceStatus.Deleted),
    "fx-running": ("RUNNING", ResourceStatus.Running),
    "fx-suspended": ("SUSPENDED", ResourceStatus.Stopped),
    "fx-held": ("PENDING", ResourceStatus.Booting),
    "fx-begin": ("PENDING", ResourceStatus.Booting),
}


def test_every_state_of_the_recorded_listing_is_mapped(pilot):
    adapter = adapter_with(pilot)
    jobs = adapter.parse_listing(fixture("squeue-states.txt"))
    by_name = {job.name: job for job in jobs.values()}
    assert set(by_name) == set(EXPECTED_STATES)
    for name, (state, status) in EXPECTED_STATES.items():
        assert by_name[name].state == state
        assert adapter.translate_state(state) is status


# squeue(1) "JOB STATE CODES" of 22.05, plus RUNNING and SUSPENDED listed elsewhere
EVERY_STATE = (
    "BOOT_FAIL CANCELLED COMPLETED CONFIGURING COMPLETING DEADLINE FAILED NODE_FAIL "
    "OUT_OF_MEMORY PENDING PREEMPTED RUNNING RESV_DEL_HOLD REQUEUE_FED REQUEUE_HOLD REQUEUED "
    "RESIZING REVOKED SIGNALING SPECIAL_EXIT STAGE_OUT STOPPED SUSPENDED TIMEOUT"
).split()


@pytest.mark.parametrize("state", EVERY_STATE)
def test_every_slurm_state_is_mapped(pilot, state):
    assert state in SLURM_STATES
    assert adapter_with(pilot).translate_state(state) is not None


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("CANCELLED by 0", ResourceStatus.Deleted),  # sacct's spelling
        ("REQUEUE_HOLD", ResourceStatus.Booting),
        ("STOPPED", ResourceStatus.Stopped),
        ("SPECIAL_EXIT", ResourceStatus.Error),
        ("COMPLETING", ResourceStatus.Deleted),
        ("NEW_STATE", None),
        ("", None),
    ],
)
def test_state_decisions(pilot, state, status):
    assert adapter_with(pilot).translate_state(state) is status


@pytest.mark.parametrize(
    "stdout",
    [
        "12|RUNNING",  # truncated line
        "slurm_load_jobs error: Unable to contact slurm controller (connect failure)",
        "12|running|x",
        "|RUNNING|x",
    ],
)
async def test_unreadable_listings_are_retried_not_fatal(pilot, stdout):
    adapter = adapter_with(pilot, executor=RecordingExecutor({"squeue": stdout}))
    with pytest.raises(TardisResourceStatusUpdateFailed):
        with adapter.handle_exceptions():
            await adapter.resource_status(drone(job_id="2"))


async def test_failing_squeue_is_retried_not_fatal(pilot):
    down = failure("slurm_load_jobs error: Unable to contact slurm controller (connect failure)")
    adapter = adapter_with(pilot, executor=RecordingExecutor({"squeue": down}))
    with pytest.raises(TardisResourceStatusUpdateFailed):
        with adapter.handle_exceptions():
            await adapter.resource_status(drone(job_id="2"))


async def test_hanging_squeue_times_out(pilot):
    class Hanging(RecordingExecutor):
        async def run_command(self, command, stdin_input=None):
            await asyncio.sleep(60)

    adapter = adapter_with(pilot, executor=Hanging(), site_keys={"command_timeout": 1})
    with pytest.raises(TardisTimeout):
        with adapter.handle_exceptions():
            await adapter.resource_status(drone(job_id="2"))


def listed_ids() -> dict[str, str]:
    """fx name -> job id in the recorded listing."""
    return {
        line.split("|")[2]: line.split("|")[0]
        for line in fixture("squeue-states.txt").splitlines()
        if line
    }


async def test_listed_job_reports_its_state(pilot):
    ids = listed_ids()
    executor = RecordingExecutor({"squeue": fixture("squeue-states.txt")})
    adapter = adapter_with(pilot, executor=executor)
    for name, status in [
        ("fx-held", ResourceStatus.Booting),
        ("fx-running", ResourceStatus.Running),
        ("fx-suspended", ResourceStatus.Stopped),
        ("fx-failed", ResourceStatus.Deleted),
    ]:
        assert (
            await adapter.resource_status(drone(name, job_id=ids[name]))
        ).resource_status is status
    assert executor.commands[0][0] == "squeue --noheader --states=all --me '--format=%i|%T|%j'"


async def test_a_job_id_slurmctld_gave_to_another_job_is_not_the_drones(pilot, caplog):
    # measured on SLURM 22.05: slurmctld killed with SIGKILL forgot a drone's job 150 and
    # gave 150 to the next submission; the lost drone must not take that job for its own
    ids = listed_ids()
    executor = RecordingExecutor({"squeue": fixture("squeue-states.txt"), "sacct": sacct_answer})
    # one cached listing answers both drones: any other command was asked by job id
    adapter = adapter_with(pilot, executor=executor, site_keys={"listing_max_age": 60})
    lost = drone("testsite-0123456789", job_id=ids["fx-running"])
    assert (await adapter.resource_status(lost)).resource_status is ResourceStatus.Deleted
    owner = drone("fx-running", job_id=ids["fx-running"])
    assert (await adapter.resource_status(owner)).resource_status is ResourceStatus.Running
    assert [command.split()[0] for command, _ in executor.commands] == ["squeue"]
    (warning,) = [r.getMessage() for r in caplog.records if "reused the id" in r.getMessage()]
    assert f"testsite-0123456789 (testsite/small, slurm job {ids['fx-running']})" in warning
    assert "'fx-running'" in warning


def sacct_answer(command: str) -> str:
    # the recorded record for the job id on the command line
    job_id = command.split(" -j ")[1].split()[0]
    for name in ("completed", "failed", "cancelled", "timeout", "running"):
        text = fixture(f"sacct-{name}.txt")
        if text.startswith(f"{job_id}|"):
            return text
    return fixture("sacct-unknown.txt")


@pytest.mark.parametrize(
    ("name", "failed"),
    [("completed", False), ("failed", True), ("cancelled", True), ("timeout", True)],
)
async def test_finished_job_is_found_in_the_accounting(pilot, name, failed, caplog):
    job_id = fixture(f"sacct-{name}.txt").split("|")[0]
    executor = RecordingExecutor({"squeue": fixture("squeue-empty.txt"), "sacct": sacct_answer})
    adapter = adapter_with(pilot, executor=executor)
    status = await adapter.resource_status(drone(job_id=job_id))
    assert status.resource_status is ResourceStatus.Deleted
    assert (adapter.parse_accounting(job_id, fixture(f"sacct-{name}.txt")).failed) is failed
    # once known to have ended, the accounting is not asked again
    await adapter.resource_status(drone(job_id=job_id))
    assert sum(command.startswith("sacct") for command, _ in executor.commands) == 1


async def test_a_job_sacct_still_sees_running_is_never_declared_gone(pilot):
    job_id = fixture("sacct-running.txt").split("|")[0]
    executor = RecordingExecutor({"squeue": "", "sacct": sacct_answer})
    adapter = adapter_with(pilot, executor=executor, site_keys={"accounting_grace": 0})
    with pytest.raises(TardisResourceStatusUpdateFailed):
        await adapter.resource_status(drone(job_id=job_id))


async def test_job_without_accounting_record_is_gone_only_after_the_grace(pilot):
    executor = RecordingExecutor({"squeue": "", "sacct": fixture("sacct-unknown.txt")})
    adapter = adapter_with(pilot, executor=executor, site_keys={"accounting_grace": 3600})
    with pytest.raises(TardisResourceStatusUpdateFailed):
        await adapter.resource_status(drone(job_id="999999"))
    adapter = adapter_with(pilot, executor=executor, site_keys={"accounting_grace": 0})
    status = await adapter.resource_status(drone(job_id="999999"))
    assert status.resource_status is ResourceStatus.Deleted


async def test_a_site_without_slurmdbd_relies_on_the_listing_and_the_grace(pilot):
    disabled = failure("sacct: error: Slurm accounting storage is disabled\n")
    executor = RecordingExecutor({"squeue": "", "sacct": disabled})
    adapter = adapter_with(pilot, executor=executor, site_keys={"accounting_grace": 0})
    status = await adapter.resource_status(drone(job_id="12"))
    assert status.resource_status is ResourceStatus.Deleted


async def test_one_listing_per_bulk_window_for_all_drones_and_machine_types(pilot):
    ids = listed_ids()
    executor = RecordingExecutor({"squeue": fixture("squeue-states.txt")})
    section = site_section(str(pilot))
    section["MachineTypes"].append("large")
    section["MachineMetaData"]["large"] = {"Cores": 8, "Memory": 32, "Disk": 100}
    section["MachineTypeConfiguration"]["large"] = dict(
        section["MachineTypeConfiguration"]["small"]
    )
    section["executor"] = executor
    small = make_adapter(SlurmBatchAdapter, "SlurmBatch", section)
    large = SlurmBatchAdapter(machine_type="large", site_name="testsite")
    await asyncio.gather(
        *(small.resource_status(drone("fx-running", job_id=ids["fx-running"])) for _ in range(40)),
        *(large.resource_status(drone("fx-held", job_id=ids["fx-held"])) for _ in range(40)),
    )
    assert [command.split()[0] for command, _ in executor.commands] == ["squeue"]


def test_parsable_output_is_read(pilot):
    adapter = adapter_with(pilot)
    assert adapter.parse_job_id(fixture("sbatch-parsable.txt")).isdigit()
    assert adapter.parse_job_id("4711;cluster2\n") == "4711"


async def test_rejected_submission_is_retried_not_fatal(pilot):
    for recorded in ("sbatch-badpartition.stderr", "sbatch-badtime.stderr"):
        rejected = failure(fixture(recorded))
        executor = RecordingExecutor({"env": rejected, "squeue": ""})
        adapter = adapter_with(pilot, executor=executor)
        with pytest.raises(TardisResourceStatusUpdateFailed):
            with adapter.handle_exceptions():
                await adapter.deploy_resource(drone())


async def test_a_job_submitted_before_a_crash_is_adopted_not_submitted_again(pilot):
    ids = listed_ids()
    listing = fixture("squeue-states.txt").replace("fx-held", "testsite-0123456789")
    executor = RecordingExecutor({"squeue": listing, "env": "77"})
    adapter = adapter_with(pilot, executor=executor)
    assert (await adapter.deploy_resource(drone())).remote_resource_uuid == ids["fx-held"]
    assert not any("sbatch" in command for command, _ in executor.commands)
    assert (await adapter.deploy_resource(drone("testsite-other"))).remote_resource_uuid == "77"
    assert sum(command.startswith("squeue") for command, _ in executor.commands) == 1


class LosesTheFirstAnswer(RecordingExecutor):
    """sbatch reaches slurmctld, then the SSH connection breaks before its answer returns."""

    def __init__(self):
        super().__init__({})
        self.listing = ""

    async def run_command(self, command, stdin_input=None):
        self.commands.append((command, stdin_input))
        if command.startswith("squeue"):
            return AttributeDict(stdout=self.listing, stderr="", exit_code=0)
        if not self.listing:
            name = command.split("--job-name=")[1].split()[0]
            self.listing = f"4242|PENDING|{name}\n"
            raise ExecutorFailure(description="SSH connection lost", executor=self)
        return AttributeDict(stdout="4243\n", stderr="", exit_code=0)


async def test_a_submission_whose_answer_was_lost_is_not_submitted_again(pilot, caplog):
    executor = LosesTheFirstAnswer()
    adapter = adapter_with(pilot, executor=executor)
    with pytest.raises(TardisResourceStatusUpdateFailed):
        with adapter.handle_exceptions():
            await adapter.deploy_resource(drone())
    # TARDIS retries the drone's submission at its next heartbeat
    assert (await adapter.deploy_resource(drone())).remote_resource_uuid == "4242"
    assert sum("sbatch" in command for command, _ in executor.commands) == 1
    assert any("reached slurm as job 4242 after all" in r.getMessage() for r in caplog.records)
    # another drone is submitted as usual
    assert (await adapter.deploy_resource(drone("testsite-other"))).remote_resource_uuid == "4243"


async def test_a_second_live_job_with_the_drones_name_is_removed_once(pilot, caplog):
    # TARDIS's SSHExecutor re-ran an sbatch whose connection broke after it had arrived
    listing = "4242|RUNNING|testsite-0123456789\n4243|PENDING|testsite-0123456789\n"
    executor = ScancelRecorder(listing=listing)
    adapter = adapter_with(pilot, executor=executor)
    for _ in range(2):
        status = await adapter.resource_status(drone(job_id="4243"))
        assert status.resource_status is ResourceStatus.Booting
    assert executor.scancels() == ["scancel -v 4242"]
    assert any("job 4242 carries this drone's name too" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ stopping drones
# the listing answers at once, so only the stop grace decides what happens when
NO_DELAY = {"bulk_delay": 0.01}


def cancelled(command: str) -> str:
    """``scancel -v``'s answer when it cancelled every id (fixture scancel-v-bulk.stderr);
    the signal of a graceful stop prints nothing."""
    if "--batch" in command:
        return ""
    return "".join(
        f"scancel: Terminating job {word}\n" for word in command.split()[1:] if word.isdigit()
    )


class ScancelRecorder(RecordingExecutor):
    """Answers scancel like the real one; ``fail_kills`` plain scancels fail first."""

    def __init__(self, listing: str = "", signal_error: str | None = None, fail_kills: int = 0):
        super().__init__({"squeue": listing, "scancel": cancelled})
        self.signal_error = signal_error
        self.fail_kills = fail_kills

    async def run_command(self, command, stdin_input=None):
        if "--batch" in command and self.signal_error is not None:
            self.commands.append((command, stdin_input))
            raise failure(self.signal_error)
        if command.startswith("scancel -v ") and self.fail_kills:
            self.commands.append((command, stdin_input))
            self.fail_kills -= 1
            raise failure("scancel: error: Unable to contact slurm controller")
        return await super().run_command(command, stdin_input)

    def scancels(self) -> list[str]:
        return [command for command, _ in self.commands if command.startswith("scancel")]


async def test_stop_warns_the_pilot_then_cancels_after_the_grace(pilot):
    executor = ScancelRecorder()
    adapter = adapter_with(pilot, executor=executor, site_keys=NO_DELAY, StopGrace=0.2)
    await adapter.stop_resource(drone(job_id="12"))
    # the stop itself returns at once; the daemon's loop is not blocked by the grace
    assert executor.scancels() == ["scancel --state=RUNNING --batch --signal=USR2 12"]
    await asyncio.sleep(0.5)
    assert executor.scancels() == [
        "scancel --state=RUNNING --batch --signal=USR2 12",
        "scancel -v 12",
    ]


async def test_a_drone_that_ends_within_the_grace_is_not_cancelled(pilot):
    ids = listed_ids()
    executor = ScancelRecorder(listing=fixture("squeue-states.txt"))
    adapter = adapter_with(pilot, executor=executor, site_keys=NO_DELAY, StopGrace=0.3)
    job_id = ids["fx-completed"]
    await adapter.stop_resource(drone("fx-completed", job_id=job_id))
    status = await adapter.resource_status(drone("fx-completed", job_id=job_id))
    assert status.resource_status is ResourceStatus.Deleted
    await asyncio.sleep(0.6)
    assert executor.scancels() == [f"scancel --state=RUNNING --batch --signal=USR2 {job_id}"]


async def test_a_failed_kill_after_the_grace_is_retried_on_the_next_status(pilot):
    ids = listed_ids()
    executor = ScancelRecorder(listing=fixture("squeue-states.txt"), fail_kills=1)
    adapter = adapter_with(pilot, executor=executor, site_keys=NO_DELAY, StopGrace=0.1)
    job_id = ids["fx-running"]
    await adapter.stop_resource(drone("fx-running", job_id=job_id))
    await asyncio.sleep(0.4)  # the kill task ran and failed (slurmctld away)
    assert executor.scancels()[-1] == f"scancel -v {job_id}"
    status = await adapter.resource_status(drone("fx-running", job_id=job_id))
    assert status.resource_status is ResourceStatus.Running
    assert executor.scancels().count(f"scancel -v {job_id}") == 2
    await adapter.resource_status(drone("fx-running", job_id=job_id))
    assert executor.scancels().count(f"scancel -v {job_id}") == 2


async def test_stopping_a_pending_drone_cancels_it_at_once(pilot):
    ids = listed_ids()
    executor = ScancelRecorder(listing=fixture("squeue-states.txt"))
    adapter = adapter_with(pilot, executor=executor, site_keys=NO_DELAY, StopGrace=3600)
    job_id = ids["fx-held"]
    await adapter.resource_status(drone("fx-held", job_id=job_id))
    await adapter.stop_resource(drone("fx-held", job_id=job_id))
    assert executor.scancels() == [f"scancel -v {job_id}"]


async def test_a_job_that_cannot_take_the_signal_is_cancelled_at_once(pilot):
    executor = ScancelRecorder(signal_error=fixture("scancel-signal-pending.stderr"))
    adapter = adapter_with(pilot, executor=executor, site_keys=NO_DELAY, StopGrace=3600)
    await adapter.stop_resource(drone(job_id="12"))
    assert executor.scancels() == [
        "scancel --state=RUNNING --batch --signal=USR2 12",
        "scancel -v 12",
    ]


@pytest.mark.parametrize(
    "recorded", ["scancel-signal-unknown.stderr", "scancel-signal-finished.stderr"]
)
async def test_stopping_a_job_that_is_gone_is_not_an_error(pilot, recorded):
    executor = ScancelRecorder(signal_error=fixture(recorded))
    adapter = adapter_with(pilot, executor=executor, site_keys=NO_DELAY, StopGrace=0.1)
    await adapter.stop_resource(drone(job_id="999999"))
    await asyncio.sleep(0.3)
    assert executor.scancels() == ["scancel --state=RUNNING --batch --signal=USR2 999999"]


async def test_scancel_of_an_unknown_job_is_not_an_error(pilot):
    # the real scancel exits 0 for an unknown id; only with -v does it name it (stderr)
    assert fixture("scancel-unknown.stdout").strip() == "exit 0"
    assert fixture("scancel-unknown.stderr") == ""
    assert fixture("scancel-v-bulk.exit").strip() == "0"
    answer = "".join(
        line for line in fixture("scancel-v-bulk.stderr").splitlines(True) if " 999999" in line
    )
    adapter = adapter_with(pilot, executor=RecordingExecutor({"scancel": answer}))
    await adapter.terminate_resource(drone(job_id="999999"))


async def test_other_scancel_failures_are_retried(pilot):
    denied = failure("scancel: error: Kill job error on job id 2: Access/permission denied")
    adapter = adapter_with(pilot, executor=RecordingExecutor({"scancel": denied}))
    with pytest.raises(TardisResourceStatusUpdateFailed):
        with adapter.handle_exceptions():
            await adapter.terminate_resource(drone(job_id="2"))
    with pytest.raises(TardisResourceStatusUpdateFailed):
        with adapter.handle_exceptions():
            await adapter.stop_resource(drone(job_id="2"))


@pytest.mark.parametrize("stdout", ["٣٣", "1²", "٣;cluster", "+12"])
def test_sbatch_ids_are_ascii_digits(pilot, stdout):
    with pytest.raises(OutputError):
        adapter_with(pilot).parse_job_id(stdout)


@pytest.mark.parametrize(
    "line",
    ["٣|RUNNING|x", "1²|RUNNING|x", "abc|RUNNING|x", "12 13|RUNNING|x", "12_|PENDING|x"],
)
def test_squeue_ids_are_checked(pilot, line):
    with pytest.raises(OutputError):
        adapter_with(pilot).parse_listing(f"{fixture('squeue-states.txt')}{line}\n")


def test_array_and_het_jobs_of_the_same_user_are_read_and_left_alone(pilot):
    # squeue --me lists every job of the drone account; arrays and het jobs are never drones
    listing = "21_3|RUNNING|other\n22_[1-10%2]|PENDING|other\n23+1|RUNNING|other\n13|RUNNING|d\n"
    assert list(adapter_with(pilot).parse_listing(listing)) == ["13"]


def test_accounting_rows_about_another_job_are_an_error(pilot):
    adapter = adapter_with(pilot)
    with pytest.raises(OutputError):
        adapter.parse_accounting("10", "11|RUNNING|0:0\n")
    with pytest.raises(OutputError):
        adapter.parse_accounting("10", "10|COMPLETED|0:0\n٣|COMPLETED|0:0\n")
    # a reused id after an unclean slurmctld stop: several rows of the same id
    record = adapter.parse_accounting("10", "10|FAILED|1:0\n10|COMPLETED|0:0\n")
    assert record is not None and not record.failed


@pytest.mark.parametrize("stdout", ["٣", "1²", "12.0"])
def test_qsub_ids_are_ascii_digits(tmp_path, stdout):
    from tardis_sge_dask.sites.sge import SGEAdapter

    pilot = tmp_path / "pilot.sh"
    pilot.write_text("echo\n")
    section = site_section(str(pilot), ParallelEnvironment="smp")
    with pytest.raises(OutputError):
        make_adapter(SGEAdapter, "SGE", section).parse_job_id(stdout)


@pytest.mark.parametrize("method", ["stop_resource", "terminate_resource"])
async def test_a_failed_login_while_stopping_is_the_retried_failure_tardis_catches(pilot, method):
    from tardis.agents.siteagent import SiteAgent
    from tardis.exceptions.tardisexceptions import TardisAuthError

    ids = listed_ids()
    denied = TardisAuthError("Keyboard interactive authentication failed: Unexpected Prompt")
    executor = RecordingExecutor({"squeue": fixture("squeue-states.txt"), "scancel": denied})
    adapter = adapter_with(pilot, executor=executor)
    running = drone("fx-running", job_id=ids["fx-running"])
    await adapter.resource_status(running)  # known to run: stop sends the warning signal
    # TARDIS's ShutDownState and CleanupState catch this one and retry; not TardisAuthError
    with pytest.raises(TardisResourceStatusUpdateFailed):
        await getattr(SiteAgent(adapter), method)(running)
