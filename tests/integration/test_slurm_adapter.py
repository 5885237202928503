"""What only the SLURM adapter does, against the real local slurmctld/slurmd.

The scenarios every batch system shares (listing, graceful stop, over SSH, accounting, a
job removed behind the adapter's back, a queued drone stopped, hostile values, ...) run
on SLURM in test_batch_systems.py.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from tardis.interfaces.siteadapter import ResourceStatus
from tardis.utilities.executors.shellexecutor import ShellExecutor

from tardis_sge_dask.sites.slurm import SlurmBatchAdapter
from tests.helpers import slurm as sq
from tests.helpers.daemon import unique_site
from tests.helpers.standins import status_until
from tests.helpers.tardis_config import drone, make_adapter, site_section

pytestmark = pytest.mark.integration

SIGNAL_PILOT = Path(__file__).parent / "data" / "signal-pilot.sh"


def slurm_adapter(site: str, executor, log_directory: Path, **machine_type) -> SlurmBatchAdapter:
    settings = {"Partition": "debug", "Walltime": "0:10:00", "LogDirectory": str(log_directory)}
    section = site_section(str(SIGNAL_PILOT), **{**settings, **machine_type})
    # the local node has 2 cores, shared with other tests
    section["MachineMetaData"]["small"] = {"Cores": 1, "Memory": 1, "Disk": 1}
    section["executor"] = executor
    section["accounting_grace"] = 10
    return make_adapter(SlurmBatchAdapter, "SlurmBatch", section, site=site)


def output(log_directory: Path, attributes) -> list[str]:
    path = log_directory / f"{attributes.drone_uuid}-{attributes.remote_resource_uuid}.out"
    return path.read_text().splitlines() if path.exists() else []


async def until_output(log_directory: Path, attributes, line: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while line not in output(log_directory, attributes):
        assert time.monotonic() < deadline, output(log_directory, attributes)
        await asyncio.sleep(0.5)


async def test_a_pilot_that_ignores_the_warning_is_cancelled_after_the_grace(slurm, tmp_path):
    site = unique_site("itslurm")
    adapter = slurm_adapter(
        site,
        ShellExecutor(),
        tmp_path,
        StopGrace=3,
        StopSignal="USR1",
        JobEnvironment={"STANDIN_STUBBORN": "1"},
    )
    attributes = drone(f"{site}-0123456789")
    attributes.update(await adapter.deploy_resource(attributes))
    try:
        await status_until(adapter, attributes, ResourceStatus.Running)
        await until_output(tmp_path, attributes, f"started drone {site}-0123456789 cores=1")
        await adapter.stop_resource(attributes)
        await until_output(tmp_path, attributes, "got USR1")
        # the kill follows the grace without anyone asking for the status
        await until_output(tmp_path, attributes, "got TERM")
        await status_until(adapter, attributes, ResourceStatus.Deleted)
        lines = output(tmp_path, attributes)
        assert lines.index("got USR1") < lines.index("got TERM")
        assert sq.accounting(attributes.remote_resource_uuid)[0].startswith("CANCELLED")
    finally:
        sq.cancel(site)


async def test_the_pilot_is_warned_before_the_time_limit(slurm, tmp_path):
    site = unique_site("itslurm")
    # SLURM sends the --signal warning up to 60 s early: somewhere in the first minute here
    # a 2-minute drone is refused by the real pilot's default margin (300 s); so is it here
    adapter = slurm_adapter(
        site,
        ShellExecutor(),
        tmp_path,
        Walltime="0:02:00",
        WarningTime=60,
        JobEnvironment={"PILOT_LIFETIME_MARGIN": "30"},
    )
    attributes = drone(f"{site}-0123456789")
    attributes.update(await adapter.deploy_resource(attributes))
    try:
        assert sq.show(attributes.remote_resource_uuid)["TimeLimit"] == "00:02:00"
        await until_output(tmp_path, attributes, "got USR2", timeout=150)
        await status_until(adapter, attributes, ResourceStatus.Deleted)
        # the pilot ended itself on the warning, before SLURM's time limit
        assert sq.accounting(attributes.remote_resource_uuid) == ("COMPLETED", "0:0")
    finally:
        sq.cancel(site)
