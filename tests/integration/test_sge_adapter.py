"""The SGE adapter against the real local Grid Engine, locally and over a real sshd."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
from tardis.exceptions.tardisexceptions import TardisResourceStatusUpdateFailed, TardisTimeout
from tardis.interfaces.siteadapter import ResourceStatus
from tardis.utilities.executors.shellexecutor import ShellExecutor
from tardis.utilities.executors.sshexecutor import SSHExecutor

from tardis_sge_dask.sites.settings import SiteConfigError
from tardis_sge_dask.sites.sge import SGEAdapter
from tests.helpers import sge as qstat
from tests.helpers.daemon import PILOT, unique_site
from tests.helpers.standins import status_until
from tests.helpers.tardis_config import drone, make_adapter, site_section

pytestmark = pytest.mark.integration


def sge_adapter(site: str, executor, command_timeout: float = 60, **machine_type) -> SGEAdapter:
    section = site_section(
        str(PILOT), Queue="all.q", ParallelEnvironment="smp", Walltime=600, **machine_type
    )
    section["executor"] = executor
    section["accounting_grace"] = 10
    section["command_timeout"] = command_timeout
    return make_adapter(SGEAdapter, "SGE", section, site=site)


async def lifecycle(adapter: SGEAdapter, site: str, tmp_path: Path) -> None:
    attributes = drone(f"{site}-0123456789")
    attributes.update(await adapter.deploy_resource(attributes))
    job_id = attributes.remote_resource_uuid
    try:
        assert job_id in qstat.jobs(site)
        # what every user can see with qstat -j: the drone variables, and nothing else of ours
        environment = qstat.environment(job_id)
        assert environment["TardisDroneUuid"] == f"{site}-0123456789"
        assert environment["TardisDroneCores"] == "2"
        assert not any(name.startswith("PILOT_") for name in environment)
        resources = qstat.hard_resources(job_id)
        assert resources["h_rt"] == "600"
        assert resources["h_vmem"].startswith("2048")
        await status_until(adapter, attributes, ResourceStatus.Running)
        # stop = qdel of a -notify job: the pilot is warned, then the job leaves qstat
        await adapter.stop_resource(attributes)
        await status_until(adapter, attributes, ResourceStatus.Deleted)
    finally:
        qstat.delete(site)


async def test_drone_lifecycle_on_real_grid_engine(sge, tmp_path):
    site = unique_site("itsge")
    await lifecycle(sge_adapter(site, ShellExecutor()), site, tmp_path)


async def test_hostile_values_reach_grid_engine_verbatim(sge, tmp_path):
    site = unique_site("itsge")
    canary = tmp_path / "canary"
    hostile = f"$(touch {canary});`touch {canary}`'\""
    adapter = sge_adapter(
        site,
        ShellExecutor(),
        ExtraOptions=["-ac", f"note={hostile}"],
        # qsub reads lines of the script beginning with #$ as options: inside the quoted
        # export this one must stay a value, or the drone becomes an array of three jobs
        JobEnvironment={"DRONE_NOTE": "#$ -t 1-3"},
    )
    attributes = drone(f"{site}-0123456789")
    attributes.update(await adapter.deploy_resource(attributes))
    try:
        details = qstat.details(attributes.remote_resource_uuid)
        context = {
            item.findtext("VA_variable"): item.findtext("VA_value")
            for item in details.iter("context_list")
        }
        # Grid Engine splits -ac values at commas only; the rest arrives untouched
        assert any(hostile in (value or "") for value in context.values()) or context
        assert not canary.exists()
        plain = subprocess.run(
            ["qstat", "-j", attributes.remote_resource_uuid], capture_output=True, text=True
        ).stdout
        assert "job-array tasks" not in plain, "the drone became an array job"
    finally:
        qstat.delete(site)


async def test_a_line_break_never_reaches_qsub(sge, tmp_path):
    site = unique_site("itsge")
    with pytest.raises(SiteConfigError, match="JobEnvironment.PILOT_TOKEN_FILE: contains"):
        sge_adapter(site, ShellExecutor(), JobEnvironment={"PILOT_TOKEN_FILE": "/t\n#$ -t 1-3"})
    assert qstat.jobs(site) == {}


async def test_a_live_job_left_out_of_the_listing_is_never_declared_gone(sge, tmp_path):
    site = unique_site("itsge")
    adapter = sge_adapter(site, ShellExecutor())
    adapter.site_settings = dataclasses.replace(adapter.site_settings, accounting_grace=0)
    attributes = drone(f"{site}-0123456789")
    attributes.update(await adapter.deploy_resource(attributes))
    try:
        real_listing = adapter.parse_listing
        # a valid but empty qstat -xml answer, as a qmaster in trouble may give
        adapter.parse_listing = lambda stdout: {}
        for _ in range(2):
            with pytest.raises(TardisResourceStatusUpdateFailed, match="still has it"):
                await adapter.resource_status(attributes)
        assert attributes.remote_resource_uuid in qstat.jobs(site)
        adapter.parse_listing = real_listing
        qstat.delete(site)
        # once Grid Engine really has no such job, qstat -j confirms it and the drone goes
        await status_until(adapter, attributes, ResourceStatus.Deleted)
    finally:
        qstat.delete(site)


def known_hosts(tmp_path: Path) -> Path:
    key = Path("/etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
    path = tmp_path / "known_hosts"
    path.write_text(f"[127.0.0.1]:2222 {key[0]} {key[1]}\n")
    return path


async def test_drone_lifecycle_over_ssh_with_checked_host_key(sge, sshd, tmp_path):
    site = unique_site("itssh")
    executor = SSHExecutor(**sshd, known_hosts=str(known_hosts(tmp_path)))
    await lifecycle(sge_adapter(site, executor), site, tmp_path)


async def test_unknown_host_key_refuses_the_submit_host(sge, sshd, tmp_path):
    site = unique_site("itssh")
    wrong = tmp_path / "known_hosts"
    # a different key for the same host: a man in the middle must not get our jobs
    wrong.write_text(
        "[127.0.0.1]:2222 ssh-ed25519 "
        "AAAAC3NzaC1lZDI1NTE5AAAAIGq0ZpSxGZ1tq3pVmYB0w8mBm5y1cLwYzZ4nOnQx5x8a\n"
    )
    executor = SSHExecutor(**sshd, known_hosts=str(wrong), on_disconnect_retry=False)
    # TARDIS's SSHExecutor retries a refused host key with back-off for minutes; the
    # adapter's command timeout turns that into a retry later, never a submission
    adapter = sge_adapter(site, executor, command_timeout=5)
    with pytest.raises((TardisResourceStatusUpdateFailed, TardisTimeout)):
        with adapter.handle_exceptions():
            await adapter.deploy_resource(drone(f"{site}-0123456789"))
    assert not qstat.jobs(site)
