"""Reading Dask-worker demand from condor_q output (recorded formats, see fixtures README)."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys

import pytest
from tardis.exceptions.executorexceptions import CommandExecutionFailure
from tardis.utilities.attributedict import AttributeDict

from tardis_sge_dask.demand.htcondor import CondorQueueDemand, parse_ads, summarise
from tardis_sge_dask.demand.packing import JobShape
from tardis_sge_dask.demand.sources import DemandSourceError

from ..conftest import FIXTURES

HTCONDOR = FIXTURES / "htcondor"
DASK_WORKER_8GB = JobShape(2, 7.451)  # 8e9 bytes as RequestMemory MB / 1024


def read(name):
    return (HTCONDOR / name).read_text()


class RecordingExecutor:
    """Answers condor_q per schedd from fixtures and remembers the commands."""

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
        return AttributeDict(stdout=self.outputs[schedd], stderr="", exit_code=0)


@pytest.mark.parametrize(
    "fixture, output_format, idle",
    [
        ("condor_q_long_schedd_a.txt", "long", 4),
        ("condor_q_json_schedd_a.json", "json", 2),
        ("condor_q_af_schedd_a.txt", "af", 2),
    ],
)
def test_every_output_format_gives_the_same_shapes(fixture, output_format, idle):
    snapshot = summarise(parse_ads(read(fixture), output_format))
    shapes = list(snapshot.waiting)
    assert len(shapes) == 1
    # RequestCpus = MY.DaskWorkerCores / floor(MY.DaskWorkerMemory / 1048576) resolved
    assert shapes[0].cores == 2 and abs(shapes[0].memory_gb - 7.45) < 0.01
    assert snapshot.waiting_jobs == idle
    assert snapshot.running == 1


def test_held_jobs_are_reported_not_counted(caplog):
    with caplog.at_level(logging.WARNING):
        snapshot = summarise(parse_ads(read("condor_q_long_schedd_a.txt")))
    assert snapshot.held == 1
    assert "99.0 is held" in caplog.text and "memory limit" in caplog.text


def test_unevaluable_request_falls_back_to_dask_worker_attributes():
    # an ad where MY.DaskWorkerCores cannot be resolved (attribute renamed away)
    text = (
        "ClusterId = 5\nProcId = 0\nJobStatus = 1\nRequestCpus = MY.NotThere\n"
        "RequestMemory = MY.NotThere\nDaskWorkerCores = 3\nDaskWorkerMemory = 4294967296\n"
    )
    (shape,) = summarise(parse_ads(text)).waiting
    assert shape == JobShape(3, 4.0)


def test_literal_requests_and_gpus_are_read():
    snapshot = summarise(parse_ads(read("condor_q_long_schedd_b.txt")))
    assert snapshot.waiting[JobShape(4, 16)] == 2
    assert snapshot.waiting[JobShape(2, 8, 1)] == 1
    assert snapshot.waiting[JobShape(512, 4000)] == 1


def test_empty_queue_is_no_demand():
    assert summarise(parse_ads("")).waiting_jobs == 0


async def test_several_schedds_are_summed_and_described():
    executor = RecordingExecutor({
        "schedd-a.physnet": read("condor_q_long_schedd_a.txt"),
        "schedd-b.physnet": read("condor_q_long_schedd_b.txt"),
    })
    source = CondorQueueDemand(executor=executor, schedds=["schedd-a.physnet",
                                                           "schedd-b.physnet"])
    snapshot = await source.poll()
    assert snapshot.waiting_jobs == 8
    assert snapshot.running == 1 and snapshot.held == 1
    assert "schedd-a.physnet: 4 idle/1 running/1 held" in snapshot.detail
    assert len(executor.commands) == 2


async def test_command_selects_dask_workers_of_all_users():
    executor = RecordingExecutor({None: ""})
    await CondorQueueDemand(executor=executor, pool="overlay-cm.physnet").poll()
    argv = shlex.split(executor.commands[0])
    assert argv[:2] == ["condor_q", "-allusers"]
    assert argv[argv.index("-pool") + 1] == "overlay-cm.physnet"
    constraint = argv[argv.index("-constraint") + 1]
    assert "DaskWorkerCores =!= undefined" in constraint and "IsDaskWorker" in constraint
    assert "JobStatus == 1" in constraint and "JobStatus == 5" in constraint
    assert "-long" in argv


async def test_af_format_asks_condor_q_to_evaluate_requests():
    executor = RecordingExecutor({None: read("condor_q_af_schedd_a.txt")})
    snapshot = await CondorQueueDemand(executor=executor, output_format="af").poll()
    assert "-af:t" in shlex.split(executor.commands[0])
    assert snapshot.waiting_jobs == 2


async def test_condor_q_failure_becomes_a_source_error():
    failure = CommandExecutionFailure(message="condor_q failed", exit_code=1, stdout="",
                                      stderr="Failed to fetch ads from: <10.0.0.1:9618>")
    source = CondorQueueDemand(executor=RecordingExecutor({}, fail=failure))
    with pytest.raises(DemandSourceError, match="Failed to fetch ads"):
        await source.poll()


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
        f"ads = parse_ads(open({str(HTCONDOR / 'condor_q_long_schedd_a.txt')!r}).read())\n"
        "[job_shape(ad) for ad in ads]\n"
        "print(os.environ.get('CONDOR_CONFIG', 'unset'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CONDOR_CONFIG"}
    env["HOME"] = "/nonexistent"  # no ~/.condor either
    answer = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, check=True)
    assert answer.stdout.strip() == "unset"
