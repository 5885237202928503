"""A third batch system is one dialect file and one registry line (docs/maintainers.md).

The PBS stub in ``pbs_dialect.py`` is registered here with that one line and nothing
else: ``check``, the daemon's start-up validation, ``render`` and the pool factory then
know it, and it runs its commands on PBS-shaped outputs (hand-written, see
tests/fixtures/pbs/README.md).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from tardis.exceptions.executorexceptions import CommandExecutionFailure
from tardis.interfaces.siteadapter import ResourceStatus

from tardis_sge_dask.check import check, schema_problems
from tardis_sge_dask.poolfactory import site_adapter_class
from tardis_sge_dask.registry import SITE_ADAPTERS, SiteAdapterEntry
from tardis_sge_dask.render import render
from tests.conftest import FIXTURES
from tests.helpers.tardis_config import RecordingExecutor, drone, make_adapter

PBS = FIXTURES / "pbs"
SITE = "pbssite"


@pytest.fixture
def registered(monkeypatch):
    # the one registry line
    monkeypatch.setitem(
        SITE_ADAPTERS, "PBS", SiteAdapterEntry("PBS", "tests.unit.pbs_dialect:PBSAdapter")
    )


def site_section(pilot: Path, **machine_type: object) -> dict:
    return {
        "MachineTypes": ["small"],
        "MachineMetaData": {"small": {"Cores": 2, "Memory": 4, "Disk": 10}},
        "MachineTypeConfiguration": {
            "small": {
                "StartupCommand": str(pilot),
                "Queue": "workq",
                "Walltime": "2:00:00",
                "JobEnvironment": {"PILOT_DASK_SCHEDULER": "tcp://10.0.0.1:8786"},
                **machine_type,
            }
        },
    }


def config_file(tmp_path: Path, **machine_type: object) -> Path:
    pilot = tmp_path / "pilot.sh"
    pilot.write_text("#!/bin/bash\necho pilot body\n")
    pilot.chmod(0o755)
    section = yaml.safe_dump({SITE: site_section(pilot, **machine_type)})
    text = f"""
pipeline:
  - !DaskDemandController
    source: !DaskSchedulerDemand {{address: tcp://10.0.0.1:8786}}
  - __type__: tardis_sge_dask.poolfactory.create_composite_pool
tardis:
  BatchSystem: {{adapter: Dask, scheduler_address: tcp://10.0.0.1:8786}}
  Sites: [{{name: {SITE}, adapter: PBS, quota: 8}}]
"""
    path = tmp_path / "pbs.yaml"
    path.write_text(text + "  " + section.replace("\n", "\n  "))
    return path


def test_without_its_registry_line_the_adapter_is_unknown(tmp_path):
    problems = [str(problem) for problem in check(config_file(tmp_path))]
    assert any("unknown site adapter 'PBS'" in problem for problem in problems), problems


def test_check_and_the_daemon_accept_a_pbs_site(registered, tmp_path):
    path = config_file(tmp_path)
    assert check(path) == []
    assert schema_problems(path) == []


def test_check_and_the_daemon_refuse_a_key_pbs_does_not_know(registered, tmp_path):
    path = config_file(tmp_path, Partition="short")
    key = f"tardis.{SITE}.MachineTypeConfiguration.small.Partition"
    expected = f"{key}: unknown key for adapter PBS"
    assert any(expected in str(problem) for problem in check(path))
    assert any(expected in str(problem) for problem in schema_problems(path))


def test_check_applies_the_shared_rules_to_pbs(registered, tmp_path):
    path = config_file(tmp_path, Walltime=200)
    assert [problem.key_path for problem in check(path)] == [
        f"tardis.{SITE}.MachineTypeConfiguration.small.Walltime"
    ]


def test_render_shows_the_pbs_submission(registered, tmp_path):
    rendered = render(config_file(tmp_path), SITE, "small")
    assert rendered.argv == [
        "qsub", "-N", "pbssite-0123456789", "-S", "/bin/bash",
        "-l", "select=1:ncpus=2:mem=4096mb", "-r", "n", "-q", "workq", "-l", "walltime=7200",
        "-v", "TardisDroneCores=2,TardisDroneDisk=10485760,TardisDroneMemory=4096,"
        "TardisDroneUuid=pbssite-0123456789",
    ]  # fmt: skip
    assert "export PILOT_BATCH_SYSTEM=pbs\n" in rendered.script
    assert "export PILOT_DASK_SCHEDULER=tcp://10.0.0.1:8786\n" in rendered.script
    assert rendered.script.endswith("echo pilot body\n")


def test_a_pbs_drone_is_submitted_followed_and_found_ended(registered, tmp_path):
    assert site_adapter_class("PBS").__name__ == "PBSAdapter"
    pilot = tmp_path / "pilot.sh"
    pilot.write_text("#!/bin/bash\necho pilot body\n")
    no_jobs = '{"timestamp":1718000000,"pbs_version":"2022.1.0","pbs_server":"pbs-head"}'
    listings = [no_jobs, (PBS / "qstat-f-json.json").read_text(), no_jobs]
    finished = (PBS / "qstat-x-f-json-finished.json").read_text()
    executor = RecordingExecutor(
        {
            "qsub": (PBS / "qsub.out").read_text(),
            "qstat": lambda command: finished if " -x " in command else listings.pop(0),
            "qdel": CommandExecutionFailure(
                message="failed", exit_code=153, stdout="",
                stderr=(PBS / "qdel-unknown.err").read_text(),
            ),
        }
    )  # fmt: skip
    section = {**site_section(pilot), "executor": executor}
    adapter = make_adapter(site_adapter_class("PBS"), "PBS", section, site=SITE)
    uuid = f"{SITE}-0123456789"

    async def lifecycle() -> list:
        submitted = await adapter.deploy_resource(drone(uuid))
        job_id = submitted.remote_resource_uuid
        running = await adapter.resource_status(drone(uuid, job_id=job_id))
        ended = await adapter.resource_status(drone(uuid, job_id=job_id))
        # the server forgot an older drone: its removal is done, not an error
        await adapter.terminate_resource(drone(f"{SITE}-older", job_id="4299"))
        return [job_id, running.resource_status, ended.resource_status]

    assert asyncio.run(lifecycle()) == ["4301", ResourceStatus.Running, ResourceStatus.Deleted]
    assert [command for command, _ in executor.commands if not command.startswith("qsub")] == [
        "qstat -f -F json",  # before the first submission: a drone to adopt?
        "qstat -f -F json",
        "qstat -f -F json",
        "qstat -x -f -F json 4301",  # gone from the listing: the accounting
        "qdel 4299",
    ]
