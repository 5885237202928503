"""TARDIS site adapters for batch systems: SGE and SLURM share one base (``batchsite``)."""
