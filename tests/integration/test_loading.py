"""The package's pool factory in the real daemon: our adapters next to TARDIS's own."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import sge as qstat
from tests.helpers.daemon import PILOT, CobaldDaemon, unified_config, unique_site, wait_until

pytestmark = pytest.mark.integration


def test_sge_and_a_tardis_adapter_run_side_by_side(sge, tmp_path):
    site = unique_site("ldsge")
    section = {
        "MachineTypes": ["one"],
        "MachineMetaData": {"one": {"Cores": 1, "Memory": 1, "Disk": 1}},
        "MachineTypeConfiguration": {
            "one": {"StartupCommand": str(PILOT), "LogDirectory": str(tmp_path)}
        },
    }
    config, demand = unified_config(
        tmp_path, site=site, adapter="SGE", site_section=section, quota=1
    )
    # TARDIS's own FakeSite adapter as a second site of the same configuration
    text = config.read_text().replace(
        "  Sites:\n",
        "  Sites:\n"
        "  - {name: fakesite, adapter: FakeSite, quota: 1, drone_heartbeat_interval: 2}\n",
    )
    text += """  fakesite:
    api_response_delay: !TardisRandomGauss {mu: 0.1, sigma: 0.01, seed: 1}
    resource_boot_time: !TardisRandomGauss {mu: 1, sigma: 0.1, seed: 2}
    MachineTypes: [one]
    MachineMetaData: {one: {Cores: 1, Memory: 1, Disk: 1}}
    MachineTypeConfiguration: {one: {}}
"""
    config.write_text(text)

    daemon = CobaldDaemon(config).start()
    try:
        demand.write_text("2")
        wait_until(lambda: qstat.jobs(site), 120, "a drone of the SGE site", daemon)
        wait_until(
            lambda: "'site_name': 'fakesite'" in daemon.log() and "BootingState" in daemon.log(),
            120,
            "a drone of TARDIS's FakeSite",
            daemon,
        )
    finally:
        daemon.stop()
        qstat.delete(site)


def test_a_broken_key_stops_the_daemon_naming_file_and_key(tmp_path):
    config = tmp_path / "physnet.yaml"
    config.write_text(
        """pipeline:
  - !StaticDemand {demand: 1}
  - __type__: tardis_sge_dask.poolfactory.create_composite_pool
tardis:
  BatchSystem:
    {adapter: FakeBatchSystem, allocation: 1.0, utilisation: 1.0, machine_status: Available}
  Sites:
    - {name: physnet, adapter: SGE, quota: 8}
  physnet:
    MachineTypes: [idefix]
    MachineMetaData: {idefix: {Cores: 8, Memory: 32, Disk: 100}}
    MachineTypeConfiguration:
      idefix: {StartupCommand: /bin/true, Queue: idefix.q, Walltime: one day}
"""
    )
    result = subprocess.run(
        [sys.executable, "-m", "cobald.daemon", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert (
        f"{config}: physnet.MachineTypeConfiguration.idefix.Walltime: "
        "expected seconds or H:MM:SS, got 'one day'"
    ) in result.stdout + result.stderr
