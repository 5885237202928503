"""``DaskDemandController``: set the drone demand from the workers Dask users are waiting for.

Every ``interval`` the controller reads its demand source, packs the waiting worker jobs
onto the configured machine types and sets the demand (in cores) to

    per machine type:  busy + max(drones needed for waiting jobs, joining + recently idle),
                       at least the drones running jobs + those needed for waiting jobs

* busy drones (running workers) are always kept;
* drones still queued at the site count only as long as waiting jobs need them — when the
  demand goes away the package's pool cancels them;
* a drone whose job has started but which TARDIS has not integrated yet ("joining", supply
  still 0) is kept like a recently idle one: its worker may already be computing;
* an idle running drone is kept for ``idle_time`` seconds (a new job may come), then let go
  through TARDIS's drain.

A source that fails or hangs is logged and its last good reading is used; ``run`` never
raises and never returns, because either would stop the whole COBalD daemon.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cobald.daemon import service
from cobald.interfaces import CompositePool, Controller, Pool

from ..pool import ElasticFactoryPool, is_joining
from .packing import MachineShape, Packing, pack
from .sources import DemandSnapshot, DemandSource

logger = logging.getLogger("cobald.runtime.tardis_sge_dask.controller")


def find_typed_pools(pool: Pool) -> Iterator[ElasticFactoryPool]:
    """Walk a COBalD pipeline below the controller and yield the per-machine-type pools."""
    seen: set[int] = set()
    stack = [pool]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ElasticFactoryPool):
            yield item
            continue
        target = getattr(item, "target", None)
        if isinstance(target, Pool):
            stack.append(target)
        if isinstance(item, CompositePool):
            stack.extend(reversed(list(item.children)))


@dataclass
class DroneCounts:
    """Drones of one machine type as seen in the pool."""

    busy: int = 0
    idle: int = 0
    starting: int = 0
    #: job started at the site, not yet integrated by TARDIS (see ``pool.JOINING_STATES``)
    joining: int = 0
    #: of those, the ones joining for less than ``idle_time``
    recent_joining: int = 0


class IdleClock:
    """Remembers since when each of the currently idle drones of one type is idle.

    Drones are not told apart: when the idle count rises the new ones are stamped now, when
    it falls the most recently idle ones are assumed gone (they are the ones a new job lands
    on first is as good a guess as any, and it never keeps a drone longer than idle_time).
    """

    def __init__(self) -> None:
        self._since: deque[float] = deque()

    def update(self, idle: int, now: float) -> None:
        while len(self._since) > idle:
            self._since.pop()
        while len(self._since) < idle:
            self._since.append(now)

    def recent(self, now: float, idle_time: float) -> int:
        return sum(1 for since in self._since if now - since < idle_time)


@service(flavour=asyncio)
class DaskDemandController(Controller):
    """Demand in cores from waiting Dask-worker jobs, packed onto machine types.

    :param target: the pool (pipeline) to control
    :param source: a :py:class:`~.DemandSource` (``!CondorQueueDemand``,
        ``!DaskSchedulerDemand``)
    :param interval: seconds between two readings
    :param machine_types: ``{name: {Cores: .., Memory: .. (GB), GPUs: ..}}``; by default
        taken from the TARDIS machine types of the pool
    :param minimum: lowest demand in cores
    :param maximum: highest demand in cores (``null`` = unlimited)
    :param max_new_cores: cap on the cores added per interval (``null`` = no cap)
    :param idle_time: seconds an idle running drone is kept before it is let go
    :param source_timeout: seconds a reading may take (default: ``interval``)
    """

    def __init__(
        self,
        target: Pool,
        source: DemandSource,
        interval: float = 30,
        machine_types: Mapping[str, Mapping[str, Any]] | None = None,
        minimum: float = 0,
        maximum: float | None = None,
        max_new_cores: float | None = None,
        idle_time: float = 300,
        source_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__(target=target)
        if interval <= 0:
            raise ValueError("interval must be positive")
        if maximum is not None and maximum < minimum:
            raise ValueError("maximum must not be below minimum")
        self.source = source
        self.interval = interval
        self.minimum = minimum
        self.maximum = math.inf if maximum is None else maximum
        self.max_new_cores = max_new_cores
        self.idle_time = idle_time
        self.source_timeout = source_timeout or interval
        self._configured_types = (
            [MachineShape.from_meta_data(name, meta) for name, meta in machine_types.items()]
            if machine_types
            else None
        )
        self._clock = clock
        self._idle: dict[str, IdleClock] = {}
        self._joining_since: dict[object, float] = {}
        self._last_good: DemandSnapshot | None = None
        self._failing = False
        self._last_state: tuple | None = None
        self._last_unfit: tuple | None = None
        #: drones per machine type last asked for
        self.wanted: dict[str, int] = {}

    # ---- the loop -------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            try:
                await self.regulate()
            except asyncio.CancelledError:
                raise
            except Exception:
                # a bug in one step must not take the daemon (and every drone) down
                logger.exception("demand step failed; keeping the current demand")
            await asyncio.sleep(self.interval)

    async def read_source(self) -> DemandSnapshot | None:
        """The source's reading, or the last good one if it fails or hangs."""
        try:
            snapshot = await asyncio.wait_for(self.source.poll(), timeout=self.source_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - every source failure is survivable
            reason = "timed out" if isinstance(err, asyncio.TimeoutError) else str(err)
            if not self._failing:
                logger.warning(
                    "demand source %s failed (%s); keeping the last good demand",
                    type(self.source).__name__,
                    reason or type(err).__name__,
                )
            self._failing = True
            return self._last_good
        if self._failing:
            logger.info("demand source %s recovered", type(self.source).__name__)
        self._failing = False
        self._last_good = snapshot
        return snapshot

    async def regulate(self) -> None:
        """One step: read, decide, set the demand."""
        snapshot = await self.read_source()
        if snapshot is None:
            return  # nothing ever read: leave the pool alone
        pools = list(find_typed_pools(self.target))
        machine_types = self.machine_types(pools)
        if not machine_types:
            logger.error("no machine types configured or found in the pool; demand unchanged")
            return
        packing = pack(snapshot.waiting, machine_types)
        self._report_unfit(packing)
        running = pack(snapshot.running_shapes, machine_types)
        now = self._clock()
        counts = self.count_drones(pools, machine_types, now)
        wanted = {}
        for machine in machine_types:
            seen = counts.get(machine.name, DroneCounts())
            clock = self._idle.setdefault(machine.name, IdleClock())
            clock.update(seen.idle, now)
            recent_idle = clock.recent(now, self.idle_time)
            # a joining drone is either busy already (its worker connected before TARDIS
            # looked) or about to take a waiting job: keep it, but do not count it twice
            # A worker job is matched seconds after its startd joins, often before TARDIS
            # has seen the drone busy (or at all): drones that exist are kept for the jobs
            # running on them, never new ones asked for.
            have = seen.busy + seen.idle + seen.starting + seen.joining
            running_on = max(seen.busy, min(running.drones[machine.name], have))
            wanted[machine.name] = max(
                seen.busy + max(packing.drones[machine.name], seen.recent_joining + recent_idle),
                running_on + packing.drones[machine.name],
            )
        wanted = self.bound(wanted, machine_types, counts)
        self.apply(wanted, machine_types, pools)
        self._log(snapshot, packing, counts, wanted, machine_types)

    # ---- pieces ---------------------------------------------------------------------
    def machine_types(self, pools: list[ElasticFactoryPool]) -> list[MachineShape]:
        if self._configured_types:
            return self._configured_types
        found: dict[str, MachineShape] = {}
        for pool in pools:
            meta = pool.machine_meta_data
            if pool.machine_type and meta:
                found.setdefault(
                    pool.machine_type, MachineShape.from_meta_data(pool.machine_type, meta)
                )
        return list(found.values())

    def count_drones(
        self,
        pools: list[ElasticFactoryPool],
        machine_types: list[MachineShape],
        now: float | None = None,
    ) -> dict[str, DroneCounts]:
        now = self._clock() if now is None else now
        counts: dict[str, DroneCounts] = {}
        typed = [pool for pool in pools if pool.machine_type]
        if typed:
            joining_since: dict[object, float] = {}
            for pool in typed:
                entry = counts.setdefault(pool.machine_type, DroneCounts())
                for drone in pool.drones:
                    if drone.supply <= 0 and is_joining(drone):
                        # a drone that never shows up in the overlay is protected only
                        # for idle_time, then treated like one still queued
                        key = self._drone_key(drone)
                        since = joining_since[key] = self._joining_since.get(key, now)
                        entry.joining += 1
                        if now - since < self.idle_time:
                            entry.recent_joining += 1
                    elif drone.supply <= 0:
                        entry.starting += 1
                    elif drone.allocation > 0:
                        entry.busy += 1
                    else:
                        entry.idle += 1
            self._joining_since = joining_since
            return counts
        # a pipeline without our pool: estimate from the aggregate, one machine type
        machine = machine_types[0]
        supply = max(self.target.supply, 0.0)
        running = int(round(supply / machine.cores))
        busy = min(running, math.ceil(supply * self.target.allocation / machine.cores - 1e-9))
        counts[machine.name] = DroneCounts(busy=busy, idle=running - busy)
        return counts

    @staticmethod
    def _drone_key(drone: Pool) -> object:
        attributes = getattr(drone, "resource_attributes", None)
        uuid = getattr(attributes, "drone_uuid", None) if attributes is not None else None
        return uuid or id(drone)

    def bound(
        self,
        wanted: dict[str, int],
        machine_types: list[MachineShape],
        counts: dict[str, DroneCounts],
    ) -> dict[str, int]:
        """Apply the cap on new cores per interval, then maximum and minimum (whole drones)."""
        cores = {machine.name: machine.cores for machine in machine_types}
        if self.max_new_cores is not None:
            budget = self.max_new_cores
            for machine in machine_types:
                seen = counts.get(machine.name, DroneCounts())
                have = max(
                    self.wanted.get(machine.name, 0),
                    seen.busy + seen.idle + seen.starting + seen.joining,
                )
                extra = wanted[machine.name] - have
                if extra > 0:
                    allowed = min(extra, int(budget // cores[machine.name]))
                    wanted[machine.name] = have + allowed
                    budget -= allowed * cores[machine.name]

        def total() -> float:
            return sum(count * cores[name] for name, count in wanted.items())

        # trim the biggest machine types first so small requests keep being served
        for machine in sorted(machine_types, key=lambda m: -m.cores):
            while total() > self.maximum and wanted[machine.name] > 0:
                wanted[machine.name] -= 1
        smallest = min(machine_types, key=lambda m: m.cores)
        while total() < self.minimum and total() + smallest.cores <= self.maximum:
            wanted[smallest.name] += 1
        return wanted

    def apply(
        self,
        wanted: dict[str, int],
        machine_types: list[MachineShape],
        pools: list[ElasticFactoryPool],
    ) -> None:
        cores = {machine.name: machine.cores for machine in machine_types}
        self.wanted = dict(wanted)
        typed: dict[str, list[ElasticFactoryPool]] = {}
        for pool in pools:
            if pool.machine_type in cores:
                typed.setdefault(pool.machine_type, []).append(pool)
        if len(pools) <= 1 or not typed:
            # one pool: go through the pipeline so its decorators (Limiter, Logger) apply
            self.target.demand = sum(count * cores[name] for name, count in wanted.items())
            return
        # several machine types: a composite above them would split the demand by weight
        # and lose the shapes, so each machine type's pool is addressed directly
        for name, count in wanted.items():
            members = typed.get(name, [])
            if not members:
                if count:
                    logger.error("machine type %s has no pool; %d drone(s) not requested",
                                 name, count)
                continue
            share, extra = divmod(count, len(members))
            for index, pool in enumerate(members):
                pool.demand = (share + (1 if index < extra else 0)) * cores[name]

    def _report_unfit(self, packing: Packing) -> None:
        unfit = tuple(sorted(packing.unfit.items()))
        if unfit and unfit != self._last_unfit:
            shapes = ", ".join(f"{count}x {shape}" for shape, count in unfit)
            logger.warning("waiting jobs that fit no machine type (not counted): %s", shapes)
        self._last_unfit = unfit

    def _log(
        self,
        snapshot: DemandSnapshot,
        packing: Packing,
        counts: dict[str, DroneCounts],
        wanted: dict[str, int],
        machine_types: list[MachineShape],
    ) -> None:
        cores = sum(count * machine.cores for machine in machine_types
                    for name, count in wanted.items() if name == machine.name)
        state = (snapshot.summary(), tuple(sorted(wanted.items())))
        if state == self._last_state:
            return
        self._last_state = state
        def joining(name: str) -> str:
            seen = counts.get(name, DroneCounts()).joining
            return f", joining {seen}" if seen else ""

        per_type = ", ".join(
            f"{name}: {count} (busy {counts.get(name, DroneCounts()).busy}{joining(name)}, "
            f"for waiting {packing.drones.get(name, 0)})"
            for name, count in sorted(wanted.items())
        )
        stale = " [source failing: last good reading]" if self._failing else ""
        detail = f" [{snapshot.detail}]" if snapshot.detail else ""
        logger.info(
            "demand %g cores: %d waiting jobs, %d running, %d held; drones wanted %s%s%s",
            cores,
            snapshot.waiting_jobs,
            snapshot.running,
            snapshot.held,
            per_type,
            detail,
            stale,
        )
