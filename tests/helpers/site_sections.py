"""Site sections of one 1-core machine type on the real Grid Engine and SLURM.

For daemon tests that need a plain batch site (faults, orphans); the scenarios every
batch system shares build their own in tests/integration/test_batch_systems.py.
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers.daemon import PILOT

SIGNAL_PILOT = Path(__file__).parent.parent / "integration" / "data" / "signal-pilot.sh"


def sge_site_section(log_directory: Path) -> dict:
    return {
        "accounting_grace": 5,
        "MachineTypes": ["one"],
        "MachineMetaData": {"one": {"Cores": 1, "Memory": 1, "Disk": 1}},
        "MachineTypeConfiguration": {
            "one": {
                "StartupCommand": str(PILOT),
                "Queue": "all.q",
                "Walltime": "0:30:00",
                "MemoryResource": "h_vmem",
                "LogDirectory": str(log_directory),
            }
        },
    }


def slurm_site_section(log_directory: Path) -> dict:
    return {
        "accounting_grace": 5,
        "MachineTypes": ["one"],
        "MachineMetaData": {"one": {"Cores": 1, "Memory": 1, "Disk": 1}},
        "MachineTypeConfiguration": {
            "one": {
                "StartupCommand": str(SIGNAL_PILOT),
                "Partition": "debug",
                "Walltime": "0:30:00",
                "LogDirectory": str(log_directory),
                "StopGrace": 60,
            }
        },
    }
