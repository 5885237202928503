"""Reading Dask-worker demand from condor_q output recorded from a real HTCondor schedd.

The recordings (tests/fixtures/htcondor/recorded-23.9, see its README) hold one queue: a
dask-jobqueue worker running on a drone, three idle 2-core/4 GB workers and a fourth one
held, an 8-core/32 GB and a 64-core/512 GB worker, a worker asking for a GPU, an
htcdaskgateway worker and (in the full ``-long`` only) a plain non-Dask job.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

import classad2
import pytest
import yaml
from tardis.exceptions.executorexceptions import CommandExecutionFailure
from tardis.utilities.attributedict import AttributeDict

from tardis_sge_dask.demand.htcondor import (
    DEFAULT_CONSTRAINT,
    CondorQueueDemand,
    parse_ads,
    summarise,
)
from tardis_sge_dask.demand.packing import JobShape
from tardis_sge_dask.demand.sources import DemandSourceError

from ..conftest import FIXTURES

RECORDED = FIXTURES / "htcondor" / "recorded-23.9"
MANIFEST = json.loads((RECORDED / "manifest.json").read_text())
COMMANDS = json.loads((RECORDED / "commands.json").read_text())
PHYSNET = Path(__file__).parents[2] / "configs" / "physnet.yaml"

# what the recorded jobs ask for, in GB as condor_q's MB / 1024 (dask-jobqueue: bytes / 2**20)
WORKER = JobShape(2, round(3814 / 1024, 3))  # cores=2, memory="4GB"
BIGGER = JobShape(8, round(30517 / 1024, 3))  # cores=8, memory="32GB"
OVERSIZE = JobShape(64, round(488281 / 1024, 3))  # cores=64, memory="512GB"
GPU = JobShape(1, round(953 / 1024, 3), 1)  # cores=1, memory="1GB", request_gpus=1
GATEWAY = JobShape(2, 4.0)  # htcdaskgateway: request_cpus = 2, request_memory = 4GB
PINNED = JobShape(2, round(3814 / 1024, 3), site="PHYSnet")  # OverlayCluster(site="PHYSnet")
WAITING = {WORKER: 3, BIGGER: 1, OVERSIZE: 1, GPU: 1, GATEWAY: 1, PINNED: 1}


def recorded(name: str, stream: str = "stdout") -> str:
    return (RECORDED / f"{name}.{stream}").read_text()


def job(role: str) -> str:
    """The id of the (first) recorded job with this role."""
    return MANIFEST["jobs"][role][0]


def failure(name: str) -> CommandExecutionFailure:
    """The exception TARDIS's ShellExecutor raised for a recorded failing command."""
    return CommandExecutionFailure(
        message=f"Run command {COMMANDS[name]['command']} via ShellExecutor failed",
        exit_code=COMMANDS[name]["exit_code"],
        stdout=recorded(name).strip(),
        stderr=recorded(name, "stderr").strip(),
    )


class RecordingExecutor:
    """Answers condor_q per schedd from recordings and remembers the commands."""

    def __init__(self, outputs: dict, fail: Exception | None = None):
        self.outputs = outputs
        self.fail = fail
        self.commands: list[str] = []

    async def run_command(self, command):
        self.commands.append(command)
        if self.fail:
            raise self.fail
        argv = shlex.split(command)
        schedd = argv[argv.index("-name") + 1] if "-name" in argv else None
        # ShellExecutor strips what the command printed
        return AttributeDict(stdout=self.outputs[schedd].strip(), stderr="", exit_code=0)


@pytest.mark.parametrize("output_format", ["long", "json", "af"])
def test_every_output_format_gives_the_same_demand(output_format):
    snapshot = summarise(
        parse_ads(recorded(f"condor_q-demand-{output_format}-busy"), output_format)
    )
    # RequestCpus = MY.DaskWorkerCores / floor(MY.DaskWorkerMemory / 1048576) resolved,
    # htcdaskgateway's literal requests and the GPU request read
    assert snapshot.waiting == WAITING
    assert (snapshot.running, snapshot.held) == (1, 1)


def test_held_jobs_are_reported_not_counted(caplog):
    with caplog.at_level(logging.WARNING):
        snapshot = summarise(parse_ads(recorded("condor_q-demand-long-busy")))
    assert snapshot.held == 1
    assert f"Dask worker job {job('held')} is held (via condor_hold" in caplog.text
    assert snapshot.waiting[WORKER] == 3  # of the four such workers, the held one is not


def test_the_real_schedd_selected_every_kind_of_dask_worker_and_no_other_job():
    """The recording was made with the default constraint; condor_q applied it."""
    assert DEFAULT_CONSTRAINT in COMMANDS["condor_q-demand-long-busy"]["command"]
    selected = {
        f"{ad['ClusterId']}.{ad['ProcId']}"
        for ad in parse_ads(recorded("condor_q-demand-long-busy"))
    }
    dask_roles = ("running", "idle", "held", "bigger", "oversize", "gpu", "gateway", "pinned")
    assert selected == {j for role in dask_roles for j in MANIFEST["jobs"][role]}
    assert job("plain") not in selected


def test_default_constraint_takes_htcdaskgateway_workers():
    """htcdaskgateway marks its workers only with isDaskJob (no dask-jobqueue attribute)."""
    ads = {
        f"{ad['ClusterId']}.{ad['ProcId']}": ad for ad in parse_ads(recorded("condor_q-long-all"))
    }
    gateway = ads[job("gateway")]
    assert "DaskWorkerCores" not in gateway and "IsDaskWorker" not in gateway
    constraint = classad2.ExprTree(DEFAULT_CONSTRAINT)
    assert constraint.eval(gateway) is True
    assert constraint.eval(ads[job("idle")]) is True
    assert constraint.eval(ads[job("plain")]) is False


def test_physnet_writes_out_the_default_constraint():
    text = PHYSNET.read_text()
    # the config is YAML with cobald tags; the one line is enough
    line = next(line for line in text.splitlines() if line.strip().startswith("constraint:"))
    assert yaml.safe_load(line.strip())["constraint"] == DEFAULT_CONSTRAINT


def test_unevaluable_request_falls_back_to_dask_worker_attributes():
    # an ad where MY.DaskWorkerCores cannot be resolved (attribute renamed away)
    text = (
        "ClusterId = 5\nProcId = 0\nJobStatus = 1\nRequestCpus = MY.NotThere\n"
        "RequestMemory = MY.NotThere\nDaskWorkerCores = 3\nDaskWorkerMemory = 4294967296\n"
    )
    (shape,) = summarise(parse_ads(text)).waiting
    assert shape == JobShape(3, 4.0)


@pytest.mark.parametrize("output_format", ["long", "json", "af"])
def test_empty_queue_is_no_demand(output_format):
    output = recorded(f"condor_q-demand-{output_format}-empty")
    snapshot = summarise(parse_ads(output, output_format))
    assert (snapshot.waiting_jobs, snapshot.running, snapshot.held) == (0, 0, 0)


async def test_several_schedds_are_summed_and_described():
    executor = RecordingExecutor(
        {
            "schedd-a.physnet": recorded("condor_q-demand-long-busy"),
            "schedd-b.physnet": recorded("condor_q-demand-long-empty"),
        }
    )
    source = CondorQueueDemand(executor=executor, schedds=["schedd-a.physnet", "schedd-b.physnet"])
    snapshot = await source.poll()
    assert snapshot.waiting == WAITING
    assert snapshot.running == 1 and snapshot.held == 1
    assert "schedd-a.physnet: 8 idle/1 running/1 held" in snapshot.detail
    assert "schedd-b.physnet: 0 idle/0 running/0 held" in snapshot.detail
    assert len(executor.commands) == 2


async def test_command_selects_dask_workers_of_all_users():
    executor = RecordingExecutor({None: ""})
    await CondorQueueDemand(executor=executor, pool="overlay-cm.physnet").poll()
    argv = shlex.split(executor.commands[0])
    assert argv[:2] == ["condor_q", "-allusers"]
    assert argv[argv.index("-pool") + 1] == "overlay-cm.physnet"
    constraint = argv[argv.index("-constraint") + 1]
    assert DEFAULT_CONSTRAINT in constraint
    assert "JobStatus == 1" in constraint and "JobStatus == 5" in constraint
    assert "-long" in argv


async def test_af_format_asks_condor_q_to_evaluate_requests():
    executor = RecordingExecutor({None: recorded("condor_q-demand-af-busy")})
    snapshot = await CondorQueueDemand(executor=executor, output_format="af").poll()
    assert "-af:t" in shlex.split(executor.commands[0])
    assert snapshot.waiting == WAITING


@pytest.mark.parametrize(
    "recording, said",
    [
        # -pool 127.0.0.1:9 -name nosuch@HOST: nothing listens there
        ("condor_q-demand-long-collector-down", "Couldn't contact the condor_collector"),
        # -name nosuch@HOST: a schedd the live collector has no ad of
        ("condor_q-demand-long-unknown-schedd", "Collector has no record of schedd"),
    ],
)
async def test_condor_q_failure_becomes_a_source_error_naming_the_cause(recording, said):
    assert COMMANDS[recording]["exit_code"] != 0
    source = CondorQueueDemand(executor=RecordingExecutor({}, fail=failure(recording)))
    with pytest.raises(DemandSourceError) as raised:
        await source.poll()
    message = str(raised.value)
    assert f"exit {COMMANDS[recording]['exit_code']}" in message
    assert said in message


async def test_garbage_output_becomes_a_source_error():
    source = CondorQueueDemand(executor=RecordingExecutor({None: "this is ] not [ an ad"}))
    with pytest.raises(DemandSourceError):
        await source.poll()


def test_parsing_ads_leaves_the_daemons_condor_config_alone():
    """The bindings set CONDOR_CONFIG=/dev/null where no config file is at the standard
    paths; in the daemon every later condor_status would then find no collector."""
    script = (
        "import os\n"
        "from tardis_sge_dask.demand.htcondor import job_shape, parse_ads\n"
        f"path = {str(RECORDED / 'condor_q-demand-long-busy.stdout')!r}\n"
        "ads = parse_ads(open(path).read())\n"
        "[job_shape(ad) for ad in ads]\n"
        "print(os.environ.get('CONDOR_CONFIG', 'unset'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CONDOR_CONFIG"}
    env["HOME"] = "/nonexistent"  # no ~/.condor either
    answer = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert answer.stdout.strip() == "unset"


AD = "ClusterId = 87\nProcId = 0\nJobStatus = 1\nRequestCpus = 2\nRequestMemory = 3814\n"


@pytest.mark.parametrize(
    ("output_format", "stdout"),
    [
        # any "a = b" is an ad to classad2, and an ad without JobStatus counts for nothing
        ("long", "error = connection refused"),
        ("long", "Error: communication error\nSCHEDD = schedd@cm"),
        # classad2 drops a line it cannot read and keeps the rest of the ad
        ("long", AD.replace("JobStatus = 1", "JobStatus = 1\n]] garbage [[")),
        ("long", AD + "\nthis is ] not [ an ad\n"),
        ("long", AD.replace("JobStatus = 1", "JobStatus = 4")),  # not what was asked for
        ("long", AD.replace("ClusterId = 87", 'ClusterId = "87"')),
        ("json", "{}"),
        ("json", '{"ClusterId": 87}'),
        ("json", "[1, 2]"),
        ("json", '[{"JobStatus": 1}]'),
        ("json", "[" * 100_000 + "]" * 100_000),  # RecursionError in the json module
        ("json", '[{"ClusterId": 87, "ProcId": 0, "JobStatus": 1, "RequestCpus": {}}]'),
        ("af", "Error: communication error"),
        ("af", "87\t0\t1"),  # fewer columns than asked for
        ("af", "87\t0\t1\t2\t3814\tundefined\t2\t4000000000\tundefined\tundefined\textra"),
        ("af", "x\t0\t1\t2\t3814\tundefined\t2\t4000000000\tundefined\tundefined"),
        ("af", "87\t0\t7\t2\t3814\tundefined\t2\t4000000000\tundefined\tundefined"),
    ],
)
async def test_output_that_is_not_condor_qs_answer_is_a_source_error(output_format, stdout):
    source = CondorQueueDemand(
        executor=RecordingExecutor({None: stdout}), output_format=output_format
    )
    with pytest.raises(DemandSourceError):
        await source.poll()


async def test_the_last_good_demand_stays_when_condor_q_answers_garbage():
    from cobald.interfaces import Pool

    from tardis_sge_dask.demand.controller import DaskDemandController

    class Target(Pool):
        demand = 0.0
        supply = utilisation = allocation = 0.0

    outputs = {None: recorded("condor_q-demand-long-busy")}
    controller = DaskDemandController(
        Target(), source=CondorQueueDemand(executor=RecordingExecutor(outputs)), interval=1
    )
    good = await controller.read_source()
    assert good.waiting == WAITING
    # a garbled answer (here: one classad2 reads as an ad without a job) is no reading
    outputs[None] = "error = connection refused"
    assert await controller.read_source() is good
