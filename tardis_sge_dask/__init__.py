"""Elastic COBalD/TARDIS drones on Grid Engine and SLURM for Dask users."""

import warnings

__version__ = "0.1.0"

# TARDIS 0.9.0's SqliteRegistry stores and reads its TIMESTAMP columns through sqlite3's
# default datetime adapter and converter, which Python 3.12+ deprecates with a warning on
# every registry write (Debian 13 has Python 3.13). The values are right; TARDIS fixed it
# after 0.9.0. Only that warning, only from that module: the daemon imports this package
# when it loads its configuration, before the registry runs.
warnings.filterwarnings(
    "ignore",
    message=r"The default (date|datetime) adapter is deprecated|"
    r"The default (date|timestamp) converter is deprecated",
    category=DeprecationWarning,
    module=r"tardis\.plugins\.sqliteregistry",
)
