"""The pieces of ``tardis-sge-dask check``, one concern each (the entry is ``check.py``)."""
