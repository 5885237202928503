"""The one pool the controller talks to: every site and machine type of the daemon.

``create_composite_pool`` builds one :class:`SitePool` above one ``ElasticFactoryPool``
per site and machine type. It is an ordinary COBalD pool - the controller only sets its
``demand`` and reads its ``supply``, through whatever decorators an admin puts in the
pipeline - but both numbers carry detail (see :mod:`.demand.plan`):

* ``supply`` carries a census of the drones per site and machine type: which exist,
  which are busy, idle, starting or joining, and which are leaving;
* ``demand`` carries the drones wanted per site and machine type. A plain number (from a
  stock controller, or a decorator that replaced the value) is spread with the last plan
  seen; no plan at all fills the smallest machine type of the preferred site.

The demand is first fitted to the total that arrived (a ``Limiter`` may have cut it:
drones of the least preferred site and the largest machine types go first, whole drones,
so the result may stay below the total; a raised total adds drones of the smallest type
at the first site with room), then each site's quota is applied: a machine type gets new
drones only while every drone of its site - busy, idle, queued, or released and still
draining - holds no more cores than the site's quota.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cobald.interfaces import CompositePool, Pool

from .demand.packing import MachineShape
from .demand.plan import (
    Census,
    CensusSupply,
    Plan,
    SiteCensus,
    SlotCensus,
    SlotKey,
    plan_of,
    slot_name,
)
from .pool import ElasticFactoryPool, is_joining

logger = logging.getLogger("cobald.runtime.tardis_sge_dask.sitepool")

_EPS = 1e-9


@dataclass
class MachineTypeSlot:
    """One site's machine type: its factory pool, and what its demand is set on.

    ``target`` is the pool itself or a decorator around it (the factory puts a ``Logger``
    there, so every change of a machine type's demand is logged under its own name).
    """

    site: str
    pool: ElasticFactoryPool
    target: Pool | None = None
    shape: MachineShape | None = None

    def __post_init__(self) -> None:
        if self.target is None:
            self.target = self.pool
        if self.shape is None:
            name = self.pool.machine_type or "default"
            meta = self.pool.machine_meta_data
            if not meta:
                raise ValueError(f"{self.site}/{name}: no MachineMetaData for the machine type")
            self.shape = MachineShape.from_meta_data(name, meta)

    @property
    def key(self) -> SlotKey:
        assert self.shape is not None
        return (self.site, self.shape.name)


class SitePool(CompositePool):
    """All sites and machine types of one daemon, in the order of preference.

    :param slots: one per site and machine type, sites in the order of preference
    :param quotas: cores each site's drones may hold together (missing: no limit)
    :param clock: seconds, for how long drones have been starting or joining
    """

    def __init__(
        self,
        *slots: MachineTypeSlot,
        quotas: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not slots:
            raise ValueError("a site pool needs at least one machine type")
        self.slots: list[MachineTypeSlot] = list(slots)
        self.site_names: list[str] = list(dict.fromkeys(slot.site for slot in slots))
        self.quotas = {name: (quotas or {}).get(name, math.inf) for name in self.site_names}
        self._clock = clock
        self._demand: float = 0.0
        self._plan: Plan = Plan()
        self._since: dict[tuple[str, int], float] = {}
        self._last_cut: tuple = ()

    # ---- COBalD's Pool interface ------------------------------------------------------
    @property
    def children(self) -> list[Pool]:
        return [slot.target for slot in self.slots if slot.target is not None]

    @property
    def supply(self) -> CensusSupply:
        total = sum(slot.pool.supply for slot in self.slots)
        return CensusSupply(total, self.census())

    @property
    def demand(self) -> float:
        return self._demand

    @demand.setter
    def demand(self, value: float) -> None:
        self._demand = value
        plan = plan_of(value)
        if plan is not None:
            self._plan = plan
        census = self.census()
        drones = self.fit(self._plan, value, census)
        drones = self.apply_quotas(drones, census)
        for slot in self.slots:
            assert slot.shape is not None and slot.target is not None
            cores = drones.get(slot.key, 0) * slot.shape.cores
            if slot.pool.demand != cores:
                slot.target.demand = cores

    @property
    def utilisation(self) -> float:
        return self._weighted("utilisation")

    @property
    def allocation(self) -> float:
        return self._weighted("allocation")

    def _weighted(self, figure: str) -> float:
        weights = [(slot.pool.supply, getattr(slot.pool, figure)) for slot in self.slots]
        total = sum(weight for weight, _ in weights)
        if total <= 0:
            return 1.0
        return sum(weight * value for weight, value in weights) / total

    # ---- the census -------------------------------------------------------------------
    def census(self) -> Census:
        now = self._clock()
        since: dict[tuple[str, int], float] = {}

        def age(kind: str, drone: Pool) -> float:
            key = (kind, id(drone))
            since[key] = self._since.get(key, now)
            return now - since[key]

        slots = []
        for slot in self.slots:
            assert slot.shape is not None
            busy = idle = starting = 0
            joining_ages: list[float] = []
            oldest = 0.0
            drones = slot.pool.drones
            for drone in drones:
                if drone.supply <= 0 and is_joining(drone):
                    joining_ages.append(age("joining", drone))
                elif drone.supply <= 0:
                    starting += 1
                    oldest = max(oldest, age("starting", drone))
                elif drone.allocation > 0:
                    busy += 1
                else:
                    idle += 1
            # demand already given to the pool whose drones it has not made yet
            pending = max(0, math.ceil(slot.pool.demand / slot.shape.cores - _EPS) - len(drones))
            slots.append(
                SlotCensus(
                    site=slot.site,
                    shape=slot.shape,
                    busy=busy,
                    idle=idle,
                    starting=starting + pending,
                    joining=len(joining_ages),
                    joining_ages=tuple(joining_ages),
                    oldest_starting=oldest,
                    leaving=len(slot.pool.leaving),
                )
            )
        # rebound, not mutated: the census may be read from the trio and asyncio threads
        self._since = since
        sites = tuple(SiteCensus(name, self.quotas[name]) for name in self.site_names)
        return Census(sites=sites, slots=tuple(slots))

    # ---- from a plan to each machine type's demand ------------------------------------
    def fit(self, plan: Plan, total: float, census: Census) -> dict[SlotKey, int]:
        """The plan's drones, trimmed or filled up to ``total`` cores."""
        shapes: dict[SlotKey, MachineShape] = {}
        for slot in self.slots:
            assert slot.shape is not None  # __post_init__ sets it
            shapes[slot.key] = slot.shape
        drones = {key: max(0, int(plan.drones.get(key, 0))) for key in shapes}

        def cores() -> float:
            return sum(count * shapes[key].cores for key, count in drones.items())

        # least preferred site first, largest machine type first
        trim_order = [
            key
            for site in reversed(self.site_names)
            for key in sorted(
                (key for key in shapes if key[0] == site), key=lambda k: -shapes[k].cores
            )
        ]
        if cores() > total + _EPS:
            for key in trim_order:
                while cores() > total + _EPS and drones[key] > 0:
                    drones[key] -= 1
        elif cores() + _EPS < total and not math.isinf(total):
            self._fill(drones, total, census, shapes)
        return drones

    def _fill(
        self,
        drones: dict[SlotKey, int],
        total: float,
        census: Census,
        shapes: Mapping[SlotKey, MachineShape],
    ) -> None:
        have = {slot.key: slot.have for slot in census.slots}
        for site in self.site_names:
            keys = [key for key in shapes if key[0] == site]
            if not keys:
                continue
            smallest = min(keys, key=lambda k: (shapes[k].gpus, shapes[k].cores))
            room = self.quotas[site] - self._held_cores(site, drones, census, shapes)
            while sum(n * shapes[k].cores for k, n in drones.items()) + _EPS < total:
                # a drone that exists already costs no room
                cost = shapes[smallest].cores if drones[smallest] >= have.get(smallest, 0) else 0
                if not math.isinf(room) and room + _EPS < cost:
                    break
                drones[smallest] += 1
                room -= cost
            else:
                return

    @staticmethod
    def _held_cores(
        site: str,
        drones: Mapping[SlotKey, int],
        census: Census,
        shapes: Mapping[SlotKey, MachineShape],
    ) -> float:
        """Cores a site would hold with ``drones``: nothing that exists goes away at once."""
        held = 0.0
        for slot in census.slots_of(site):
            key = slot.key
            held += (max(drones.get(key, 0), slot.have) + slot.leaving) * shapes[key].cores
        return held

    def apply_quotas(self, drones: dict[SlotKey, int], census: Census) -> dict[SlotKey, int]:
        """New drones only while the site's drones hold no more cores than its quota."""
        result = dict(drones)
        cuts = []
        for site in self.site_names:
            quota = self.quotas[site]
            slots = census.slots_of(site)
            room = quota - census.alive_cores(site)
            # smallest machine types first: they fit the room that is left
            for slot in sorted(slots, key=lambda s: s.shape.cores):
                key = slot.key
                extra = result.get(key, 0) - slot.have
                if extra <= 0:
                    continue
                fits = extra if math.isinf(room) else int((room + _EPS) // slot.shape.cores)
                allowed = max(0, min(extra, fits))
                room -= allowed * slot.shape.cores
                if allowed < extra:
                    cuts.append(f"{slot_name(key)} {slot.have + allowed} of {result[key]}")
                    result[key] = slot.have + allowed
        cut = tuple(cuts)
        if cut and cut != self._last_cut:
            logger.info("site quota reached: drones kept at %s", ", ".join(cuts))
        self._last_cut = cut
        return result


def slots_from(pools: Sequence[ElasticFactoryPool]) -> list[MachineTypeSlot]:
    """Slots for pools that know their site and machine type (tests, simple setups)."""
    return [MachineTypeSlot(site=pool.site_name or "site", pool=pool) for pool in pools]
