"""``!StaticDemand``: a fixed number of cores, or the number written in a file.

For admins who want to hand-steer a site (``echo 32 > demand``) and for tests that
need a demand they control. The file is read every ``interval``; an unreadable or
non-numeric file keeps the last good value and says so once.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from cobald.daemon import service
from cobald.interfaces import Controller, Pool

logger = logging.getLogger("cobald.runtime.tardis_sge_dask.demand.static")


@service(flavour=asyncio)
class StaticDemand(Controller):
    def __init__(
        self,
        target: Pool,
        demand: float = 0.0,
        file: str | None = None,
        interval: float = 5.0,
    ):
        super().__init__(target=target)
        self.demand = float(demand)
        self.file = Path(file) if file else None
        self.interval = float(interval)
        self._complained = False

    def read_demand(self) -> float:
        if self.file is None:
            return self.demand
        try:
            value = float(self.file.read_text().strip() or 0)
            if value < 0:
                raise ValueError("negative")
        except (OSError, ValueError) as err:
            if not self._complained:
                logger.warning(
                    "demand file %s unusable (%s); keeping %s", self.file, err, self.demand
                )
                self._complained = True
            return self.demand
        self._complained = False
        return value

    async def run(self) -> None:
        while True:
            demand = self.read_demand()
            if demand != self.target.demand:
                logger.info("demand %s -> %s cores", self.target.demand, demand)
            self.demand = demand
            self.target.demand = demand
            await asyncio.sleep(self.interval)
