"""``tardis-sge-dask init``: probe a Grid Engine or SLURM site and write its configuration.

:mod:`.sge` and :mod:`.slurm` read the site (read-only commands through the executor the
daemon will use, :mod:`.runner`) into a :class:`.model.SiteSurvey`; :mod:`.writer` writes
it, keys and help from the schemas; :mod:`.placeholders` marks what only the admin knows.
"""
