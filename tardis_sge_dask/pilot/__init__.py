"""What runs on the worker node: the drone pilot and the startd configuration.

The pilot (``drone-pilot.sh``) is the StartupCommand of a machine type; the site adapter
renders it into the job script (``sites/jobscript.py``). ``python -m tardis_sge_dask.pilot
--path`` prints where it is installed, for configs to point at.
"""

from __future__ import annotations

from pathlib import Path

PILOT_SCRIPT = Path(__file__).with_name("drone-pilot.sh")

# The pilot's exit codes (docs/pilot.md), as `python -m tardis_sge_dask.pilot --exit-codes`
# lists them; tests/unit/test_pilot_failures.py holds drone-pilot.sh to them.
EXIT_CODES = {
    0: "the payload finished or was drained",
    10: "bad environment: a TardisDrone* or PILOT_* setting is missing or malformed",
    11: "no container runtime although PILOT_CONTAINER names an image",
    12: "CVMFS repositories are required but cannot be provided",
    13: "the token file is missing, unreadable or empty",
    14: "a health check failed (scratch, image, CVMFS, X.509 proxy, gfal2)",
    15: "the payload failed to start or exited with an error",
}


def pilot_path() -> Path:
    """The installed path of the drone pilot script."""
    return PILOT_SCRIPT
