"""TARDIS batch-system adapter ``adapter: Dask``: the overlay is one Dask scheduler.

A drone is the worker whose *name* is the drone uuid (the pilot starts
``dask worker --name $TardisDroneUuid``). One RPC round trip to the scheduler serves all
drones for ``max_age`` minutes (TARDIS polls per drone; the scheduler is asked in bulk).

Status mapping:

* worker connected, ``running``/``paused``           -> Available
* worker ``closing_gracefully`` (being retired)      -> Draining
* worker gone after we retired it                    -> Drained
* never seen / gone without our doing                -> NotAvailable

If the scheduler cannot be reached the last good view is used: a scheduler restart must not
make TARDIS shut down every drone.

Config (``BatchSystem`` section)::

    BatchSystem:
      adapter: Dask
      scheduler_address: tcp://scheduler.example:8786
      max_age: 0.25          # minutes a scheduler view is reused (default 0.25)
      timeout: 10            # seconds for one scheduler call
      security:              # optional TLS, as distributed.security.Security
        tls_ca_file: /etc/dask/ca.pem
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from tardis.configuration.configuration import Configuration
from tardis.interfaces.batchsystemadapter import BatchSystemAdapter, MachineStatus
from tardis.utilities.attributedict import AttributeDict

from ..scheduler_rpc import make_security, scheduler_rpc, scheduler_state

logger = logging.getLogger("cobald.runtime.tardis_sge_dask.batchsystems.dask")


def _plain(value: Any) -> Any:
    if isinstance(value, AttributeDict):
        return {key: _plain(item) for key, item in value.items()}
    return value


class DaskAdapter(BatchSystemAdapter):
    """Drones are Dask workers named after the drone uuid."""

    def __init__(self, config: Any = None):
        batch_system = config if config is not None else Configuration().BatchSystem
        self.address = batch_system.scheduler_address
        self.max_age = float(getattr(batch_system, "max_age", 0.25)) * 60
        self.timeout = float(getattr(batch_system, "timeout", 10))
        self.security = make_security(_plain(getattr(batch_system, "security", None)))
        self._workers: dict[str, dict[str, Any]] = {}
        self._fetched_at = -float("inf")
        self._retired: set[str] = set()
        self._lock: asyncio.Lock | None = None

    async def _refresh(self, force: bool = False) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not force and time.monotonic() - self._fetched_at < self.max_age:
                return
            try:
                state = await scheduler_state(self.address, self.security, self.timeout)
            except (TimeoutError, OSError) as err:
                # back off for one max_age; TARDIS keeps working from the last view
                self._fetched_at = time.monotonic()
                logger.warning(
                    "Dask scheduler %s unreachable (%s); using the last known workers",
                    self.address,
                    err or type(err).__name__,
                )
                return
            self._workers = {info["name"]: info for info in state["workers"].values()}
            self._fetched_at = time.monotonic()

    async def _worker(self, drone_uuid: str) -> dict[str, Any] | None:
        await self._refresh()
        return self._workers.get(drone_uuid)

    async def integrate_machine(self, drone_uuid: str) -> None:
        # a worker joins the scheduler by itself
        return None

    async def disintegrate_machine(self, drone_uuid: str) -> None:
        self._retired.discard(drone_uuid)
        return None

    async def drain_machine(self, drone_uuid: str) -> None:
        """Retire the worker: its data moves to other workers, then it closes."""
        await self._refresh()
        if drone_uuid not in self._workers:
            # nothing to retire; remember it so the drone is seen as drained
            self._retired.add(drone_uuid)
            return
        self._retired.add(drone_uuid)
        # retiring waits for the worker's data to move, which may take longer than a
        # drone state step should block: wait up to `timeout`, let the rest run on
        task = asyncio.ensure_future(self._retire(drone_uuid))
        done, _ = await asyncio.wait({task}, timeout=self.timeout)
        if not done:
            logger.info("retirement of worker %s continues on the scheduler", drone_uuid)
        self._fetched_at = -float("inf")

    async def _retire(self, drone_uuid: str) -> None:
        try:
            async with scheduler_rpc(self.address, self.security, self.timeout) as remote:
                await remote.retire_workers(names=[drone_uuid], close_workers=True, remove=True)
        except Exception as err:  # a failed retire is retried by TARDIS
            # the drone goes on to DrainingState, sees Available again and drains again
            logger.warning("could not retire worker %s: %s", drone_uuid, err)
            self._retired.discard(drone_uuid)
        self._fetched_at = -float("inf")

    async def get_machine_status(self, drone_uuid: str) -> MachineStatus:
        worker = await self._worker(drone_uuid)
        gone = MachineStatus.Drained if drone_uuid in self._retired else MachineStatus.NotAvailable
        if worker is None:
            return gone
        status = worker["status"]
        if status in ("running", "paused"):
            if drone_uuid in self._retired:
                # retire was asked but the scheduler has not started on it yet
                return MachineStatus.Draining
            return MachineStatus.Available
        if status in ("closing_gracefully", "closing"):
            return MachineStatus.Draining
        return gone

    async def _ratios(self, drone_uuid: str) -> list[float]:
        worker = await self._worker(drone_uuid)
        if worker is None or not worker["nthreads"]:
            return []
        threads = min(1.0, worker["processing"] / worker["nthreads"])
        memory = (
            min(1.0, worker["managed_bytes"] / worker["memory_limit"])
            if worker["memory_limit"]
            else 0.0
        )
        return [threads, memory]

    async def get_allocation(self, drone_uuid: str) -> float:
        """Busy threads or stored data, whichever takes more of the worker."""
        return max(await self._ratios(drone_uuid), default=0.0)

    async def get_utilisation(self, drone_uuid: str) -> float:
        return min(await self._ratios(drone_uuid), default=0.0)

    @property
    def machine_meta_data_translation_mapping(self) -> AttributeDict:
        # same units as HTCondor (MB, KiB): the pilot reads TardisDroneMemory as MB
        return AttributeDict(Cores=1, Memory=1024, Disk=1024 * 1024)
