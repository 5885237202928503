"""The factory pool behind each machine type: COBalD's ``FactoryPool`` contract, and it
also lets go of drones still queued in the batch system.

Stock ``FactoryPool`` (cobald 0.14) shrinks only when ``supply > demand``. A drone that is
still queued at the site has supply 0, so with demand at 0 queued drones were never
released: measured on Grid Engine, they stayed queued and were drained only after they had
started. Here the comparison is against the demand already *committed* to the children,
and queued drones are the first to go, busy ones the last. A released queued drone gets
demand 0, which TARDIS's ``BootingState`` turns into a cancellation at the site.

It keeps its own children rather than subclassing ``FactoryPool``, whose bookkeeping is
private; released drones are kept until TARDIS has them down, because until then they
still hold their place (and cores) at the site, which the site quota counts.

The factory interval is a constructor argument (stock TARDIS hard-codes the 30 s default).
A rise in demand is acted on within ``GROWTH_CHECK_INTERVAL``, not at the next interval.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio
from cobald.daemon import service
from cobald.interfaces import CompositePool, Pool
from tardis.resources.dronestates import DownState, IntegrateState, IntegratingState

logger = logging.getLogger("cobald.runtime.tardis_sge_dask.pool")


#: TARDIS drone states in which the batch job already runs but the drone is not yet seen
#: in the overlay (each lasts up to one heartbeat): supply is still 0, yet the payload may
#: already be working - a Dask worker joins the scheduler before TARDIS looks again
JOINING_STATES = (IntegrateState, IntegratingState)


def is_joining(child: Pool) -> bool:
    """Whether a drone's job has started at the site but TARDIS has not integrated it yet."""
    return isinstance(getattr(child, "state", None), JOINING_STATES)


def is_gone(child: Pool) -> bool:
    """Whether a released drone no longer exists at the site.

    A TARDIS drone is gone in ``DownState``; anything else that is not a TARDIS drone is
    gone once it supplies nothing (``FactoryPool``'s notion of an inactive child).
    """
    if isinstance(getattr(child, "state", None), DownState):
        return True
    return not hasattr(child, "resource_attributes") and child.supply <= 0


def release_order(child: Pool) -> tuple[bool, bool, float, float]:
    """Sort key for children to release: queued first, then joining, idle, least busy."""
    return (child.supply > 0, is_joining(child), child.allocation, child.utilisation)


#: how often the pool looks for a rise of its demand between two adjustments. Growing at
#: once is what a waiting physicist feels (bench/bench_overlay.py: with the pool interval
#: of configs/physnet.yaml, 10 s, the step from demand seen to drone submitted took 11.8 s,
#: with 2 s 4.1 s); shrinking still waits for the interval, so a short dip in the demand
#: does not cancel drones that are about to be used.
GROWTH_CHECK_INTERVAL = 1.0


@service(flavour=trio)
class ElasticFactoryPool(CompositePool):
    """Factory pool that grows and shrinks its drones to the demand within one interval.

    :param children: drones restored from a registry
    :param factory: callable creating a new drone already set to its demand
    :param interval: seconds between adjustments
    :param machine_type: name of the machine type the drones belong to (discovered from
        the factory's ``site_agent`` when not given)
    :param site_name: name of the site (discovered likewise)
    """

    def __init__(
        self,
        *children: Pool,
        factory: Callable[[], Pool],
        interval: float = 30,
        machine_type: str | None = None,
        site_name: str | None = None,
    ):
        self.factory = factory
        self.interval = interval
        self._demand: float = sum(child.demand for child in children)
        #: children meant to provide resources
        self._active: list[Pool] = list(children)
        #: released children not yet gone from the site
        self._released: list[Pool] = []
        site_agent = getattr(factory, "keywords", {}).get("site_agent")
        self.machine_type = machine_type or getattr(site_agent, "machine_type", None)
        self.site_name = site_name or getattr(site_agent, "site_name", None)
        self._site_agent = site_agent
        #: the demand of the last adjustment: a rise above it is acted on at once
        self._adjusted_to: float = 0.0

    # ---- COBalD's Pool interface ------------------------------------------------------
    @property
    def children(self) -> list[Pool]:
        return [*self._active, *self._released]

    @property
    def demand(self) -> float:
        return self._demand

    @demand.setter
    def demand(self, value: float) -> None:
        # acted on by run(): creating drones may take a while
        self._demand = value

    @property
    def supply(self) -> float:
        return sum(child.supply for child in self.children)

    @property
    def utilisation(self) -> float:
        return self._mean("utilisation")

    @property
    def allocation(self) -> float:
        return self._mean("allocation")

    def _mean(self, figure: str) -> float:
        # FactoryPool's rule: the mean over children that supply something, 1 if none
        active = [child for child in self.children if child.supply > 0]
        if not active:
            return 1.0
        return sum(getattr(child, figure) for child in active) / len(active)

    # ---- what the site pool and the controller look at --------------------------------
    @property
    def machine_meta_data(self) -> dict[str, Any] | None:
        """Cores / Memory (GB) / Disk (GB) [/ GPUs] of one drone of this machine type."""
        if self._site_agent is None:
            return None
        try:
            return dict(self._site_agent.machine_meta_data)
        except Exception:  # a misconfigured site must not break accounting
            return None

    @property
    def drones(self) -> list[Pool]:
        """Children still meant to provide resources (not yet released)."""
        return list(self._active)

    @property
    def leaving(self) -> list[Pool]:
        """Released children that still exist at the site (draining or being cancelled)."""
        # read from the controller's thread: filter, never prune here
        return [child for child in self._released if not is_gone(child)]

    @property
    def committed(self) -> float:
        """Demand already asked of the children that are not being released."""
        return sum(child.demand for child in self._active)

    async def run(self) -> None:
        since_adjustment = 0.0
        while True:
            step = min(self.interval, GROWTH_CHECK_INTERVAL)
            await trio.sleep(step)
            since_adjustment += step
            if since_adjustment >= self.interval or self.demand > self._adjusted_to:
                self.adjust()
                since_adjustment = 0.0

    def adjust(self) -> None:
        """Bring the children in line with the demand (one factory step)."""
        demand = self._adjusted_to = self.demand
        if self.committed > demand:
            self._shrink(target=demand)
        else:
            self._grow(target=demand)

    def _shrink(self, target: float) -> None:
        excess = self.committed - target
        released = 0
        for child in sorted(self._active, key=release_order):
            if excess <= 0:
                break
            if child.demand <= excess:
                excess -= child.demand
                queued = child.supply <= 0
                self._release(child)
                released += 1
                logger.debug("released %s drone %r", "queued" if queued else "running", child)
        if released:
            logger.info(
                "%s: released %d drone(s), demand %s, committed %s",
                self.machine_type or "pool",
                released,
                target,
                self.committed,
            )
        self._release_disabled()

    def _grow(self, target: float) -> None:
        missing = target - sum(child.demand for child in self.children)
        while missing > 0:
            child = self.factory()
            if child.demand <= 0:
                # stock FactoryPool asserts here, which would abort the daemon
                logger.error("factory produced a child without demand; not growing")
                return
            self._active.append(child)
            missing -= child.demand
        self._release_disabled()

    def _release(self, child: Pool) -> None:
        child.demand = 0
        self._active.remove(child)
        self._released.append(child)

    def _release_disabled(self) -> None:
        # a child may disable itself by setting its own demand to 0 (FactoryPool contract)
        for child in [child for child in self._active if child.demand <= 0]:
            self._release(child)
        self._released = [child for child in self._released if not is_gone(child)]
