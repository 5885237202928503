"""Rules about the pilot's settings that both sides of a drone enforce.

``check`` and the daemon (``schema/pilot.py``) refuse a configuration that breaks them
before any drone is submitted; the drone's startd configuration
(``startd_config.py``) refuses them again inside the image. That image has this package
installed without its dependencies, so this module imports nothing but the standard
library.
"""

from __future__ import annotations

#: PILOT_LIFETIME_MARGIN's default (docs/pilot.md), also drone-pilot.sh's
DEFAULT_LIFETIME_MARGIN = 300


def walltime_problem(walltime: int | None, margin: int) -> str | None:
    """Why a drone of ``walltime`` seconds cannot retire ``margin`` seconds early, or None.

    The pilot's retire time is the walltime minus the margin: a walltime not longer than
    the margin leaves a drone that retires before it starts (the pilot exits 10).
    """
    if walltime is not None and walltime <= margin:
        return f"{walltime} s leaves nothing after PILOT_LIFETIME_MARGIN={margin}"
    return None
