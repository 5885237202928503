"""What travels through the COBalD pipeline between the controller and the site pool.

COBalD's interface between a controller and its pool is two numbers: the controller sets
``demand`` and reads ``supply`` (and the fitness figures). Decorators an admin puts in
between (``Logger``, ``Limiter``, ``Buffer``) pass those numbers on, or clamp them. This
package needs more than a total in both directions - which machine types at which site
exist and are busy, and how many drones of each are wanted - so both numbers are floats
that carry that detail:

* the site pool's ``supply`` is a :class:`CensusSupply`: the cores supplied, plus a
  :class:`Census` of the drones per site and machine type;
* the controller's ``demand`` is a :class:`ShapedDemand`: the cores wanted, plus the
  drones wanted per site and machine type.

A decorator that keeps the value passes the detail along; one that changes the total
(``Limiter`` at its maximum) changes only the total, and the site pool fits the drones
to it. Nothing here reaches past the pipeline.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from .packing import MachineShape

#: (site name, machine type name)
SlotKey = tuple[str, str]


def slot_name(key: SlotKey) -> str:
    """``site/type``; just ``type`` for a pool that does not say its site."""
    return f"{key[0]}/{key[1]}" if key[0] else key[1]


@dataclass(frozen=True)
class SlotCensus:
    """The drones of one machine type at one site, by what they are doing."""

    site: str
    shape: MachineShape
    busy: int = 0
    idle: int = 0
    #: requested or queued at the site (supply 0)
    starting: int = 0
    #: the job runs at the site, TARDIS is integrating it (supply still 0)
    joining: int = 0
    #: seconds each joining drone has been joining
    joining_ages: tuple[float, ...] = ()
    #: seconds the longest-starting drone has been starting (0: none starting)
    oldest_starting: float = 0.0
    #: released drones that still hold their place at the site (draining, cancelling)
    leaving: int = 0

    @property
    def key(self) -> SlotKey:
        return (self.site, self.shape.name)

    @property
    def have(self) -> int:
        return self.busy + self.idle + self.starting + self.joining

    @property
    def alive(self) -> int:
        """Drones that exist at the site: they count against its quota."""
        return self.have + self.leaving


@dataclass(frozen=True)
class SiteCensus:
    name: str
    #: cores all drones of the site may hold together
    quota: float = math.inf


@dataclass(frozen=True)
class Census:
    """Sites in the order of preference, and the drones of each machine type there."""

    sites: tuple[SiteCensus, ...] = ()
    slots: tuple[SlotCensus, ...] = ()

    def slots_of(self, site: str) -> list[SlotCensus]:
        return [slot for slot in self.slots if slot.site == site]

    def alive_cores(self, site: str) -> float:
        return sum(slot.alive * slot.shape.cores for slot in self.slots_of(site))

    def quota(self, site: str) -> float:
        for entry in self.sites:
            if entry.name == site:
                return entry.quota
        return math.inf


class CensusSupply(float):
    """The site pool's supply in cores, carrying its :class:`Census`."""

    census: Census

    def __new__(cls, cores: float, census: Census) -> CensusSupply:
        value = super().__new__(cls, cores)
        value.census = census
        return value


@dataclass(frozen=True)
class Plan:
    """Drones wanted per site and machine type."""

    drones: Mapping[SlotKey, int] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.drones.items())))


class ShapedDemand(float):
    """Demand in cores that carries the :class:`Plan` it was made from.

    Made only through :func:`shaped_demand`. The plan is a class attribute of a subclass
    made for it because cobald's ``Standardiser`` (the ``Limiter``, and TARDIS's site
    quota in a stock pipeline) clamps with ``type(value)(limit)``: the clamped total then
    still carries the plan, and the site pool trims the drones to the limit.
    """

    plan: Plan = Plan()

    def __repr__(self) -> str:
        return float.__repr__(self)

    __str__ = __repr__


@functools.lru_cache(maxsize=64)
def _demand_class(plan: Plan) -> type[ShapedDemand]:
    return type("ShapedDemand", (ShapedDemand,), {"plan": plan})


def shaped_demand(cores: float, plan: Plan) -> ShapedDemand:
    """The total demand ``cores``, carrying ``plan``."""
    return _demand_class(plan)(cores)


def plan_of(demand: float) -> Plan | None:
    """The plan a demand value carries, if it is one of ours."""
    return demand.plan if isinstance(demand, ShapedDemand) else None
