"""SitePool: the one pool the controller sets, split per site and machine type; quotas hold,
decorators in the pipeline apply, the census reaches the controller through them."""

from __future__ import annotations

import math

from cobald.decorator.buffer import Buffer
from cobald.decorator.limiter import Limiter
from cobald.decorator.logger import Logger

from tardis_sge_dask.demand.packing import MachineShape
from tardis_sge_dask.demand.plan import Plan, ShapedDemand, plan_of, shaped_demand
from tardis_sge_dask.pool import ElasticFactoryPool
from tardis_sge_dask.sitepool import MachineTypeSlot, SitePool

from .test_controller import FakeDrone

IDEFIX = MachineShape("idefix.q", 8, 32)
GRAPHIX = MachineShape("graphix.q", 16, 64, 2)
BATCH = MachineShape("batch", 4, 16)


def typed_pool(shape, *drones):
    return ElasticFactoryPool(
        *drones, factory=lambda: FakeDrone(shape.cores), interval=1, machine_type=shape.name
    )


def two_sites(quota_a=math.inf, quota_b=math.inf, a_drones=(), b_drones=()):
    pools = {
        ("A", "idefix.q"): typed_pool(IDEFIX, *a_drones),
        ("A", "graphix.q"): typed_pool(GRAPHIX),
        ("B", "batch"): typed_pool(BATCH, *b_drones),
    }
    shapes = {"idefix.q": IDEFIX, "graphix.q": GRAPHIX, "batch": BATCH}
    site = SitePool(
        *[MachineTypeSlot(site=s, pool=p, shape=shapes[t]) for (s, t), p in pools.items()],
        quotas={"A": quota_a, "B": quota_b},
    )
    return site, pools


def cores_at(pools, site):
    """Cores of every drone that exists at ``site``, released ones included."""
    return sum(
        drone.cores
        for (s, _), pool in pools.items()
        if s == site
        for drone in pool.children
        if drone.demand > 0 or drone.supply > 0
    )


def plan(**drones):
    keyed = {tuple(key.split("__")): n for key, n in drones.items()}
    return Plan({(site, name.replace("_", ".")): n for (site, name), n in keyed.items()})


def test_the_plan_is_split_per_site_and_machine_type():
    site, pools = two_sites()
    wanted = plan(A__idefix_q=2, A__graphix_q=1, B__batch=3)
    site.demand = shaped_demand(2 * 8 + 16 + 3 * 4, wanted)
    assert [pool.demand for pool in pools.values()] == [16, 16, 12]


def test_a_site_quota_holds_over_several_machine_types():
    site, pools = two_sites(quota_a=32)
    site.demand = shaped_demand(3 * 8 + 2 * 16, plan(A__idefix_q=3, A__graphix_q=2))
    for pool in pools.values():
        pool.adjust()
    assert cores_at(pools, "A") <= 32
    assert pools[("A", "idefix.q")].demand == 24
    assert pools[("A", "graphix.q")].demand == 0


def test_drones_still_leaving_count_against_the_quota():
    busy = [FakeDrone(8, state="busy") for _ in range(3)]
    site, pools = two_sites(quota_a=32, a_drones=busy)
    # the three busy drones are let go (draining: still at the site), graphix is wanted
    site.demand = shaped_demand(16, plan(A__graphix_q=1))
    pools[("A", "idefix.q")].interval = 0
    pools[("A", "idefix.q")].adjust()
    site.demand = shaped_demand(16, plan(A__graphix_q=1))
    assert pools[("A", "graphix.q")].demand == 0  # 24 cores draining + 16 > 32
    for drone in busy:
        drone.state = "queued"  # gone from the site
    site.demand = shaped_demand(16, plan(A__graphix_q=1))
    assert pools[("A", "graphix.q")].demand == 16


def test_a_limiter_that_cuts_the_total_keeps_the_plan_and_trims_whole_drones():
    site, pools = two_sites()
    limited = Limiter(Logger(site, name="admin"), maximum=16)
    limited.demand = shaped_demand(8 + 16 + 4, plan(A__idefix_q=1, A__graphix_q=1, B__batch=1))
    # the least preferred site and the largest type go first
    assert pools[("B", "batch")].demand == 0
    assert pools[("A", "graphix.q")].demand == 0
    assert pools[("A", "idefix.q")].demand == 8
    # and a Limiter's minimum fills with the preferred site's smallest type
    site2, pools2 = two_sites()
    Limiter(site2, minimum=20).demand = shaped_demand(0, plan())
    assert pools2[("A", "idefix.q")].demand == 24


def test_the_clamped_value_still_carries_the_plan():
    wanted = plan(A__idefix_q=2)
    value = shaped_demand(16, wanted)
    clamped = type(value)(8.0)  # what cobald's Standardiser does at a limit
    assert isinstance(clamped, ShapedDemand) and plan_of(clamped) == wanted
    assert plan_of(8.0) is None


def test_a_buffer_passes_the_plan_on():
    site, pools = two_sites()
    buffered = Buffer(site, window=10)
    buffered.demand = shaped_demand(4, plan(B__batch=1))
    buffered.target.demand = buffered.demand  # what Buffer.run does every window
    assert pools[("B", "batch")].demand == 4


def test_a_plain_number_fills_the_preferred_site_then_the_next_within_quotas():
    site, pools = two_sites(quota_a=16, quota_b=8)
    site.demand = 30  # a stock controller: no plan
    assert pools[("A", "idefix.q")].demand == 16
    assert pools[("B", "batch")].demand == 8
    assert pools[("A", "graphix.q")].demand == 0


def test_the_census_reaches_the_controller_through_decorators():
    busy, queued = FakeDrone(8, state="busy"), FakeDrone(8)
    site, _ = two_sites(quota_a=64, a_drones=(busy, queued))
    top = Limiter(Logger(Buffer(site), name="admin"), maximum=100)
    supply = top.supply
    assert supply == 8
    census = supply.census
    assert [s.name for s in census.sites] == ["A", "B"]
    assert census.quota("A") == 64 and census.quota("B") == math.inf
    [idefix] = [slot for slot in census.slots if slot.key == ("A", "idefix.q")]
    assert (idefix.busy, idefix.starting, idefix.idle) == (1, 1, 0)
    assert census.alive_cores("A") == 16


def test_utilisation_and_allocation_are_weighted_by_supply():
    site, _ = two_sites(a_drones=(FakeDrone(8, state="busy"), FakeDrone(8, state="idle")))
    assert site.allocation == 0.5 and site.utilisation == 0.5
    empty, _ = two_sites()
    assert empty.allocation == 1.0


def test_a_lower_plain_number_gives_up_the_next_site_first():
    site, pools = two_sites(quota_a=16, quota_b=8)
    site.demand = 24
    for pool in pools.values():
        pool.adjust()
    site.demand = 16
    assert pools[("A", "idefix.q")].demand == 16
    assert pools[("B", "batch")].demand == 0
