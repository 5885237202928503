"""Elastic COBalD/TARDIS drones on Grid Engine and SLURM for Dask users."""

__version__ = "0.1.0"
