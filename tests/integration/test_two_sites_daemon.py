"""One real ``python -m cobald.daemon`` driving the real Grid Engine and the real SLURM.

The Grid Engine site is preferred (first in ``tardis.Sites``) and has two machine types
under one quota; SLURM takes the overflow. The demand is a plain number (``!StaticDemand``,
a stock controller's interface): the package's site pool fills the preferred site's
smallest machine type within its quota, then the next site, and gives the next site up
first when the demand falls. The quotas are counted in ``qstat`` and ``squeue`` at every
poll, drones still queued and drones going away included (every drone here is of a 1-core
type: the plain number fills the smallest one, so drones count as cores).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import sge as qstat
from tests.helpers import slurm as sq
from tests.helpers.daemon import PILOT, CobaldDaemon, unified_config, unique_site

pytestmark = pytest.mark.integration

SGE_QUOTA = 2
SLURM_QUOTA = 2


def sge_section(logs: Path) -> dict:
    types = {"one": 1, "two": 2}
    return {
        "accounting_grace": 5,
        "MachineTypes": list(types),
        "MachineMetaData": {t: {"Cores": c, "Memory": 1, "Disk": 1} for t, c in types.items()},
        "MachineTypeConfiguration": {
            t: {
                "StartupCommand": str(PILOT),
                "Queue": "all.q",
                "Walltime": "0:30:00",
                "MemoryResource": "h_vmem",
                "LogDirectory": str(logs),
                **({"ParallelEnvironment": "smp"} if types[t] > 1 else {}),
            }
            for t in types
        },
    }


def slurm_section(logs: Path) -> dict:
    return {
        "executor": "__SHELL_EXECUTOR__",
        "accounting_grace": 5,
        "MachineTypes": ["sone"],
        "MachineMetaData": {"sone": {"Cores": 1, "Memory": 1, "Disk": 1}},
        "MachineTypeConfiguration": {
            "sone": {
                "StartupCommand": str(PILOT),
                "Partition": "debug",
                "Walltime": "0:30:00",
                "LogDirectory": str(logs),
            }
        },
    }


@pytest.fixture
def two_sites(sge, slurm, tmp_path):
    sge_name, slurm_name = unique_site("tsge"), unique_site("tslurm")
    config, demand = unified_config(
        tmp_path, site=sge_name, adapter="SGE", site_section=sge_section(tmp_path), quota=SGE_QUOTA
    )
    text = config.read_text()
    loaded = yaml.safe_load(
        text.replace("!StaticDemand", "").replace("!TardisShellExecutor {}", "__SHELL_EXECUTOR__")
    )
    loaded["tardis"]["Sites"].append(
        {
            "name": slurm_name,
            "adapter": "SlurmBatch",
            "quota": SLURM_QUOTA,
            "drone_heartbeat_interval": 2,
        }
    )
    loaded["tardis"][slurm_name] = slurm_section(tmp_path)
    loaded["tardis"][sge_name]["executor"] = "__SHELL_EXECUTOR__"
    loaded["pipeline"][0] = "__STATIC_DEMAND__"
    out = yaml.safe_dump(loaded, sort_keys=False)
    out = out.replace("- __STATIC_DEMAND__", f"- !StaticDemand {{file: {demand}, interval: 1}}")
    out = out.replace("__SHELL_EXECUTOR__", "!TardisShellExecutor {}")
    config.write_text(out)
    daemon = CobaldDaemon(config)
    yield sge_name, slurm_name, daemon, demand
    daemon.stop()
    qstat.delete(sge_name)
    sq.cancel(slurm_name)


def watch(sge_name, slurm_name, daemon, until, timeout, what):
    """Poll both batch systems every second; every poll must keep both quotas."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        at_sge = len(qstat.jobs(sge_name))
        at_slurm = len(sq.alive(slurm_name))
        assert at_sge <= SGE_QUOTA, f"{at_sge} drones at Grid Engine:\n{daemon.log()[-3000:]}"
        assert at_slurm <= SLURM_QUOTA, f"{at_slurm} at SLURM:\n{daemon.log()[-3000:]}"
        if until(at_sge, at_slurm):
            return
        assert daemon.alive, daemon.log()[-4000:]
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}\n{daemon.log()[-4000:]}")


def test_quotas_hold_overflow_goes_to_slurm_and_comes_back(two_sites):
    sge_name, slurm_name, daemon, demand = two_sites
    daemon.start()
    # 1-core drones of the smallest type: at most SGE_QUOTA at Grid Engine, the rest SLURM
    demand.write_text("4")
    watch(
        sge_name,
        slurm_name,
        daemon,
        lambda a, b: (a, b) == (2, 2),
        180,
        "2 drones at Grid Engine and 2 at SLURM",
    )
    # more than both quotas: nothing beyond them, for a while
    demand.write_text("10")
    end = time.monotonic() + 20
    watch(
        sge_name, slurm_name, daemon, lambda a, b: time.monotonic() > end, 40, "20 s at full quota"
    )
    # demand falls to what Grid Engine holds: SLURM's drones go first
    demand.write_text("2")
    watch(
        sge_name,
        slurm_name,
        daemon,
        lambda a, b: (a, b) == (2, 0),
        180,
        "SLURM's drones gone, Grid Engine's kept",
    )
    demand.write_text("0")
    watch(sge_name, slurm_name, daemon, lambda a, b: (a, b) == (0, 0), 180, "no drones")
