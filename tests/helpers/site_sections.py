"""Site sections of one 1-core machine type on the real Grid Engine and SLURM.

For daemon tests that need a plain batch site (faults, orphans); the scenarios every
batch system shares build their own in tests/integration/test_batch_systems.py.
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers.daemon import PILOT

SIGNAL_PILOT = Path(__file__).parent.parent / "integration" / "data" / "signal-pilot.sh"


def one_core_site_section(log_directory: Path, pilot: Path, machine_type: dict) -> dict:
    """A site of one 1-core machine type ``one``: 30 min walltime, logs in ``log_directory``,
    plus the batch system's own machine-type keys."""
    return {
        "accounting_grace": 5,
        "MachineTypes": ["one"],
        "MachineMetaData": {"one": {"Cores": 1, "Memory": 1, "Disk": 1}},
        "MachineTypeConfiguration": {
            "one": {
                "StartupCommand": str(pilot),
                "Walltime": "0:30:00",
                "LogDirectory": str(log_directory),
                **machine_type,
            }
        },
    }


def sge_site_section(log_directory: Path) -> dict:
    return one_core_site_section(
        log_directory, PILOT, {"Queue": "all.q", "MemoryResource": "h_vmem"}
    )


def slurm_site_section(log_directory: Path) -> dict:
    return one_core_site_section(
        log_directory, SIGNAL_PILOT, {"Partition": "debug", "StopGrace": 60}
    )
