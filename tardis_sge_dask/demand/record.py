"""A pipeline decorator that records the demand passing through it in a JSON file.

Another process (``tardis-sge-dask demo``, a monitoring script) learns what the daemon's
controller asks for by reading this file, not the daemon's log text, whose format is the
admin's ``logging`` section::

    pipeline:
      - !DaskDemandController {...}
      - __type__: tardis_sge_dask.demand.record.DemandRecord
        path: /run/tardis-sge-dask/demand.json
      - __type__: tardis_sge_dask.poolfactory.create_composite_pool

The demand is handed on unchanged (the per-site plan it carries included); the file holds
``{"demand": cores, "supply": cores, "time": epoch seconds}`` and is replaced atomically,
so a reader never sees half of it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from cobald.interfaces import Pool, PoolDecorator

logger = logging.getLogger("cobald.runtime.tardis_sge_dask.demand.record")


class DemandRecord(PoolDecorator):
    def __init__(self, target: Pool, path: str):
        super().__init__(target)
        self.path = Path(path)

    @property
    def demand(self) -> Any:
        return self.target.demand

    @demand.setter
    def demand(self, value: Any) -> None:
        self.target.demand = value
        try:
            write_record(self.path, float(value), float(self.target.supply))
        except OSError as err:
            # a record is for onlookers: the pipeline goes on without it
            logger.warning("cannot record the demand in %s: %s", self.path, err)


def write_record(path: Path, demand: float, supply: float) -> None:
    text = json.dumps({"demand": demand, "supply": supply, "time": time.time()})
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_record(path: Path) -> dict[str, float] | None:
    """The last record, or None before the first (or if it is unreadable)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("demand"), int | float):
        return None
    return record
