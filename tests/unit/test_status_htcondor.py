"""``status`` in HTCondor mode: drone -> batch job -> startd -> HTCondor jobs -> Dask workers.

``condor_status`` is a stand-in on PATH that prints what the real one printed for status's
query (tests/fixtures/htcondor/recorded-23.9: one drone running one dask-jobqueue worker)
and records how it was called. tests/integration/test_overlay.py runs status on the live pool.
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from tardis_sge_dask.cli import main
from tests.conftest import FIXTURES
from tests.helpers.registry import register
from tests.helpers.standins import recording_command

RECORDED = FIXTURES / "htcondor" / "recorded-23.9"
MANIFEST = json.loads((RECORDED / "manifest.json").read_text())
#: the recording's drone, and one the registry knows that has no startd in the pool
DRONE, IDLE_DRONE = MANIFEST["drone"], "physnet-9f8e7d6c5b"
(WORKER_JOB,) = MANIFEST["jobs"]["running"]
#: the name the worker really had in its Dask cluster (the job slot publishes it)
WORKER = MANIFEST["worker_names"][WORKER_JOB]


@pytest.fixture
def overlay(tmp_path, monkeypatch):
    tardis = {
        "Plugins": {"SqliteRegistry": {"db_file": str(tmp_path / "drones.db")}},
        "BatchSystem": {
            "adapter": "HTCondor",
            "max_age": 1,
            "options": {"pool": "cm.example:9618"},
        },
        "Sites": [{"name": "PHYSnet", "adapter": "SGE", "quota": 8}],
        "PHYSnet": {
            "MachineTypes": ["idefix"],
            "MachineMetaData": {"idefix": {"Cores": 8, "Memory": 32, "Disk": 100}},
        },
    }
    asyncio.run(register(tardis, "PHYSnet", ((DRONE, "idefix"), (IDLE_DRONE, "idefix"))))
    config = tmp_path / "physnet.yaml"
    # the executor as an admin writes it: a tag, built by status like the daemon would
    config.write_text(
        "tardis:\n"
        + "".join(f"  {line}\n" for line in json.dumps(tardis, indent=1).splitlines()).replace(
            '"max_age": 1,', '"max_age": 1, "executor": !TardisShellExecutor {},'
        )
    )
    record = tmp_path / "condor_status.json"
    recording_command(
        tmp_path / "bin", "condor_status", record,
        stdout=(RECORDED / "condor_status-status-cli-busy.stdout").read_text().rstrip("\n"),
    )  # fmt: skip
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    return config, record


def test_status_maps_each_drone_to_its_startd_jobs_and_workers(overlay, capsys):
    config, record = overlay
    assert main(["status", str(config)]) == 0
    out = capsys.readouterr().out
    busy = next(line for line in out.splitlines() if line.startswith(DRONE))
    assert busy.split()[:3] == [DRONE, "Available", "4242-99"]
    assert f"startd {MANIFEST['slot']}" in busy
    assert f"job {WORKER_JOB} = worker {WORKER}" in busy
    idle = next(line for line in out.splitlines() if line.startswith(IDLE_DRONE))
    assert idle.split()[-1] == "-"  # registered, but no startd in the pool
    # the collector was asked once, for drones only, of the configured pool
    argv = json.loads(record.read_text())["argv"]
    assert argv[:2] == ["-pool", "cm.example:9618"]
    assert "TardisDroneUuid =!= undefined" in argv


def test_status_finds_the_drone_and_batch_job_of_a_dask_worker(overlay, capsys):
    config, _ = overlay
    assert main(["status", "--find", WORKER, str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines[1:-1]] == [[DRONE, "Available", "4242-99"]]
    assert main(["status", "--find", "OverlayCluster-77", str(config)]) == 1
    assert "no drone knows 'OverlayCluster-77'" in capsys.readouterr().err
