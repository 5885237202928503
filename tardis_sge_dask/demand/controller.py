"""``DaskDemandController``: set the drone demand from the workers Dask users are waiting for.

Every ``interval`` the controller reads its demand source, routes the waiting worker jobs
to the sites (:mod:`.routing`: a job's own site, else the sites in the order of preference
within their quotas), packs them onto each site's machine types and wants

    per site and machine type:  busy + max(drones needed for waiting jobs, joining + recently idle),
                       at least the drones running jobs + those needed for waiting jobs

* busy drones (running workers) are always kept;
* drones still queued at the site count only as long as waiting jobs need them — when the
  demand goes away the package's pool cancels them;
* a drone whose job has started but which TARDIS has not integrated yet ("joining", supply
  still 0) is kept like a recently idle one: its worker may already be computing;
* an idle running drone is kept for ``idle_time`` seconds (a new job may come), then let go
  through TARDIS's drain.

It acts only through its pipeline: it reads the drones per site and machine type from the
pipeline's ``supply`` and sets the pipeline's ``demand`` with the drones it wants per site
and machine type (:mod:`.plan`); the package's site pool at the bottom of the pipeline
splits it, so an admin's ``Limiter``/``Logger``/``Buffer`` and the site quotas apply.

A source that fails or hangs is logged and its last good reading is used; ``run`` never
raises and never returns, because either would stop the whole COBalD daemon.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import Any

from cobald.daemon import service
from cobald.interfaces import Controller, Pool

from .packing import JobShape, MachineShape, pack
from .plan import Census, Plan, SiteCensus, SlotCensus, SlotKey, shaped_demand, slot_name
from .routing import Routing, route
from .sources import DemandSnapshot, DemandSource

logger = logging.getLogger("cobald.runtime.tardis_sge_dask.controller")


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
    :param spill_after: seconds a site's drones may stay queued before waiting jobs that
        name no site go to the next site (``None``: only a full quota spills)
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
        spill_after: float | None = None,
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
        self.spill_after = spill_after
        self._configured_types = (
            [MachineShape.from_meta_data(name, meta) for name, meta in machine_types.items()]
            if machine_types
            else None
        )
        self._clock = clock
        self._idle: dict[SlotKey, IdleClock] = {}
        self._wanted_keys: dict[SlotKey, int] = {}
        self._last_decisions: tuple = ()
        self._last_good: DemandSnapshot | None = None
        self._failing = False
        self._last_state: tuple | None = None
        self._last_unfit: tuple | None = None
        #: drones per site/machine type last asked for
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
        except Exception as err:  # every source failure is survivable
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
        """One step: read, route, decide, set the demand."""
        snapshot = await self.read_source()
        if snapshot is None:
            return  # nothing ever read: leave the pool alone
        census = self.census()
        if not census.slots:
            logger.error("no machine types configured or found in the pool; demand unchanged")
            return
        routing = route(snapshot.waiting, census, self.spill_after)
        self._report(routing)
        now = self._clock()
        running = self._running_drones(snapshot.running_shapes, census)
        wanted: dict[SlotKey, int] = {}
        for slot in census.slots:
            clock = self._idle.setdefault(slot.key, IdleClock())
            clock.update(slot.idle, now)
            recent_idle = clock.recent(now, self.idle_time)
            # a joining drone is either busy already (its worker connected before TARDIS
            # looked) or about to take a waiting job: keep it, but do not count it twice;
            # one that never shows up in the overlay is kept only for idle_time
            recent_joining = sum(1 for age in slot.joining_ages if age < self.idle_time)
            needed = routing.needed.get(slot.key, 0)
            # A worker job is matched seconds after its startd joins, often before TARDIS
            # has seen the drone busy (or at all): drones that exist are kept for the jobs
            # running on them, never new ones asked for.
            running_on = max(slot.busy, min(running.get(slot.key, 0), slot.have))
            wanted[slot.key] = max(
                slot.busy + max(needed, recent_joining + recent_idle),
                running_on + needed,
            )
        wanted = self.bound(wanted, census)
        self.wanted = {slot_name(key): count for key, count in wanted.items()}
        cores = sum(wanted[slot.key] * slot.shape.cores for slot in census.slots)
        # the one place the controller acts: the pipeline's demand, carrying the plan
        self.target.demand = shaped_demand(cores, Plan(dict(wanted)))
        self._log(snapshot, routing, census, wanted, cores)

    # ---- pieces ---------------------------------------------------------------------
    def census(self) -> Census:
        """The drones per site and machine type, as the pipeline's supply reports them."""
        supply = self.target.supply
        census = getattr(supply, "census", None)
        if not isinstance(census, Census):
            return self._estimated_census(supply)
        if not self._configured_types:
            return census
        configured = {machine.name: machine for machine in self._configured_types}
        return dataclasses.replace(
            census,
            slots=tuple(
                dataclasses.replace(slot, shape=configured.get(slot.shape.name, slot.shape))
                for slot in census.slots
            ),
        )

    def _estimated_census(self, supply: float) -> Census:
        """A pipeline without the package's site pool: estimated from the aggregate.

        Only the configured machine types are known; the running drones are taken to be of
        the first one.
        """
        if not self._configured_types:
            return Census()
        first, *others = self._configured_types
        supply = max(float(supply), 0.0)
        running = int(round(supply / first.cores))
        busy = min(running, math.ceil(supply * self.target.allocation / first.cores - 1e-9))
        slots = [SlotCensus(site="", shape=first, busy=busy, idle=running - busy)]
        slots += [SlotCensus(site="", shape=machine) for machine in others]
        return Census(sites=(SiteCensus(""),), slots=tuple(slots))

    @staticmethod
    def _running_drones(
        running_shapes: Mapping[JobShape, int], census: Census
    ) -> dict[SlotKey, int]:
        """Drones per site and machine type the running jobs would fill."""
        drones: dict[SlotKey, int] = {}
        for site in census.sites:
            machines = [slot.shape for slot in census.slots_of(site.name)]
            here = Counter(
                {job: n for job, n in running_shapes.items() if job.site in ("", site.name)}
            )
            for name, count in pack(here, machines).drones.items():
                drones[(site.name, name)] = count
        return drones

    def bound(self, wanted: dict[SlotKey, int], census: Census) -> dict[SlotKey, int]:
        """Apply the cap on new cores per interval, then maximum and minimum (whole drones)."""
        slots = {slot.key: slot for slot in census.slots}
        cores = {key: slot.shape.cores for key, slot in slots.items()}
        if self.max_new_cores is not None:
            budget = self.max_new_cores
            for key, slot in slots.items():
                have = max(self._wanted_keys.get(key, 0), slot.have)
                extra = wanted[key] - have
                if extra > 0:
                    allowed = min(extra, int(budget // cores[key]))
                    wanted[key] = have + allowed
                    budget -= allowed * cores[key]

        def total() -> float:
            return sum(count * cores[key] for key, count in wanted.items())

        # trim the least preferred site and its biggest machine types first, so small
        # requests at the preferred site keep being served
        order = {site.name: index for index, site in enumerate(census.sites)}
        for key in sorted(slots, key=lambda k: (-order[k[0]], -cores[k])):
            while total() > self.maximum and wanted[key] > 0:
                wanted[key] -= 1
        smallest = min(slots, key=lambda k: (order[k[0]], slots[k].shape.gpus, cores[k]))
        while total() < self.minimum and total() + cores[smallest] <= self.maximum:
            wanted[smallest] += 1
        self._wanted_keys = dict(wanted)
        return wanted

    def _report(self, routing: Routing) -> None:
        unfit = tuple(sorted(routing.unfit.items()))
        if unfit and unfit != self._last_unfit:
            shapes = ", ".join(f"{count}x {shape}" for shape, count in unfit)
            logger.warning("waiting jobs that fit no machine type (not counted): %s", shapes)
        self._last_unfit = unfit
        decisions = tuple(routing.decisions)
        if decisions != self._last_decisions and (
            len(decisions) > 1 or routing.waiting or self._several_sites(routing)
        ):
            for decision in decisions:
                logger.info("routing: %s", decision)
        self._last_decisions = decisions

    @staticmethod
    def _several_sites(routing: Routing) -> bool:
        return len({key[0] for key in routing.needed}) > 1

    def _log(
        self,
        snapshot: DemandSnapshot,
        routing: Routing,
        census: Census,
        wanted: dict[SlotKey, int],
        cores: float,
    ) -> None:
        state = (snapshot.summary(), tuple(sorted(wanted.items())))
        if state == self._last_state:
            return
        self._last_state = state
        slots = {slot.key: slot for slot in census.slots}

        def joining(key: SlotKey) -> str:
            seen = slots[key].joining
            return f", joining {seen}" if seen else ""

        per_type = ", ".join(
            f"{slot_name(key)}: {count} (busy {slots[key].busy}{joining(key)}, "
            f"for waiting {routing.needed.get(key, 0)})"
            for key, count in wanted.items()
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
