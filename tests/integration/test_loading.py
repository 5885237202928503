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
    assert "Traceback" not in result.stdout + result.stderr
    # COBalD's own start-up log lines come first, then the problem
    problems = [line for line in result.stderr.splitlines() if line.startswith(f"{config}: ")]
    assert problems[0].startswith(
        f"{config}: tardis.physnet.MachineTypeConfiguration.idefix.Walltime: "
        "expected seconds or H:MM:SS, got 'one day'. Fix: "
    )


# (case, change of a working configuration, the line the daemon prints first)
REFUSED_AT_START = [
    (
        "queue-typo",
        lambda text: text.replace("Queue: idefix.q", "Queu: idefix.q"),
        "tardis.physnet.MachineTypeConfiguration.idefix.Queu: unknown key for adapter SGE."
        " Fix: did you mean 'Queue'",
    ),
    (
        "controller-typo",
        lambda text: text.replace("!StaticDemand {demand: 1}", "!StaticDemand {demnd: 1}"),
        "pipeline[0] (!StaticDemand).demnd: unknown key. Fix: did you mean 'demand'",
    ),
    (
        "duplicate-machine-type-key",
        lambda text: text.replace("Queue: idefix.q}", "Queue: idefix.q, Queue: obelix.q}"),
        "(file): not valid YAML (line 13, column 76): duplicate key 'Queue' (first at line 13)",
    ),
    (
        "drone-minimum-lifetime-zero",
        lambda text: text.replace("quota: 8}", "quota: 8, drone_minimum_lifetime: 0}"),
        "tardis.Sites[0].drone_minimum_lifetime: ensure this value is greater than 0",
    ),
    (
        "walltime-within-the-pilot-margin",
        lambda text: text.replace(
            "Walltime: 3600", "Walltime: '0:10:00', JobEnvironment: {PILOT_LIFETIME_MARGIN: 900}"
        ),
        "tardis.physnet.MachineTypeConfiguration.idefix.Walltime: 600 s leaves nothing after"
        " PILOT_LIFETIME_MARGIN=900",
    ),
    (
        "executor-on-local",
        lambda text: (
            text.replace("adapter: SGE", "adapter: Local")
            .replace("  physnet:\n", "  physnet:\n    executor: !TardisShellExecutor {}\n")
            .replace(", Queue: idefix.q", "")
        ),
        "tardis.physnet.executor: unknown key for adapter Local.",
    ),
]

WORKING = """pipeline:
  - !StaticDemand {demand: 1}
  - __type__: tardis_sge_dask.poolfactory.create_composite_pool
tardis:
  BatchSystem:
    {adapter: FakeBatchSystem, allocation: 1.0, utilisation: 1.0, machine_status: Available}
  Sites:
    - {name: physnet, adapter: SGE, quota: 8}
  physnet:
    MachineTypes: [idefix]
    MachineMetaData: {idefix: {Cores: 1, Memory: 2, Disk: 10}}
    MachineTypeConfiguration:
      idefix: {StartupCommand: /bin/true, Walltime: 3600, Queue: idefix.q}
    JobEnvironment: {PILOT_DASK_SCHEDULER: "tcp://127.0.0.1:8786"}
"""


@pytest.mark.parametrize(
    ("change", "line"),
    [case[1:] for case in REFUSED_AT_START],
    ids=[case[0] for case in REFUSED_AT_START],
)
def test_the_daemon_refuses_at_start_in_one_line(tmp_path, change, line):
    """Issue 10 A6/A7: the same line as check, the file and key named, no traceback."""
    config = tmp_path / "site.yaml"
    config.write_text(change(WORKING))
    result = subprocess.run(
        [sys.executable, "-m", "cobald.daemon", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    first = [text for text in result.stderr.splitlines() if text.startswith(f"{config}: ")]
    assert first and first[0].startswith(f"{config}: {line}"), result.stderr
    checked = subprocess.run(
        [sys.executable, "-m", "tardis_sge_dask", "check", "--skip-files", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 1 and first[0] in checked.stdout.splitlines()
