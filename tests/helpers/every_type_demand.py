"""A controller for tests: one drone of every machine type of a site, switched by a file.

``!StaticDemand`` sets a plain number of cores, which the site pool fills with the smallest
machine type. A test that wants one drone of *each* type at once hands the site pool a
plan instead (``tardis_sge_dask.demand.plan``), as the Dask controller does for real work:

    pipeline:
      - __type__: tests.helpers.every_type_demand.EveryTypeDemand
        file: /path/demand        # "1": one drone of each type; "0": none; "a,b": of those
        site: mysite
        machine_types: {a: 2, b: 8}   # name: cores
      - __type__: tardis_sge_dask.poolfactory.create_composite_pool

The daemon imports it by name: run it with the repository on ``PYTHONPATH``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from cobald.daemon import service
from cobald.interfaces import Controller, Pool

from tardis_sge_dask.demand.plan import Plan, shaped_demand


@service(flavour=asyncio)
class EveryTypeDemand(Controller):
    def __init__(
        self,
        target: Pool,
        file: str,
        site: str,
        machine_types: dict[str, int],
        interval: float = 1.0,
    ):
        super().__init__(target=target)
        self.file = Path(file)
        self.interval = interval
        self.site = site
        self.machine_types = machine_types

    def wanted(self) -> float:
        try:
            text = self.file.read_text().strip()
        except OSError:
            text = ""
        if text in ("", "0"):
            return 0.0
        names = list(self.machine_types) if text == "1" else text.split(",")
        plan = Plan({(self.site, name): 1 for name in names})
        return shaped_demand(float(sum(self.machine_types[name] for name in names)), plan)

    async def run(self) -> None:
        while True:
            self.target.demand = self.wanted()
            await asyncio.sleep(self.interval)
