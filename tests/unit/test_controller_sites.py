"""The controller over several sites: it sets one demand on the pipeline, the site pool
splits it; quotas hold, overflow goes to the next site and comes back, pinned jobs stay."""

from __future__ import annotations

import logging
from collections import Counter

from cobald.decorator.logger import Logger

from tardis_sge_dask.demand.controller import DaskDemandController
from tardis_sge_dask.demand.packing import JobShape
from tardis_sge_dask.demand.sources import DemandSnapshot

from .test_controller import WORKER, FakeDrone, ScriptedSource
from .test_sitepool import cores_at, two_sites


def step_pools(pools):
    for pool in pools.values():
        pool.adjust()


async def test_overflow_goes_to_the_next_site_and_returns_when_the_first_frees(caplog):
    site, pools = two_sites(quota_a=16, quota_b=40)
    source = ScriptedSource(DemandSnapshot(waiting=Counter({WORKER: 12})))
    ctrl = DaskDemandController(Logger(site, name="admin"), source=source, interval=1, idle_time=0)
    with caplog.at_level(logging.INFO, logger="cobald.runtime"):
        await ctrl.regulate()
    step_pools(pools)
    assert cores_at(pools, "A") == 16 and cores_at(pools, "B") == 8
    assert "routing: 4 job(s) spill to B: A quota of 16 cores full" in caplog.text
    # A's drones run the first eight workers; B's the rest; then A's work is done
    for drone in pools[("A", "idefix.q")].drones:
        drone.state = "busy"
    for drone in pools[("B", "batch")].drones:
        drone.state = "busy"
    source.readings = [DemandSnapshot(waiting=Counter({WORKER: 4}), running=12)]
    await ctrl.regulate()
    step_pools(pools)
    # A is full of busy drones: the new jobs go to B
    assert cores_at(pools, "A") == 16 and cores_at(pools, "B") == 16
    for drone in pools[("A", "idefix.q")].drones:
        drone.state = "idle"
    source.readings = [DemandSnapshot(waiting=Counter({WORKER: 4}), running=4)]
    await ctrl.regulate()
    # A's idle drones take the waiting work again; B keeps its two busy drones, and the
    # two still queued there are cancelled
    assert ctrl.wanted["A/idefix.q"] == 1
    assert ctrl.wanted["B/batch"] == 2


async def test_a_pinned_job_only_gets_drones_at_its_site_and_waits_when_full(caplog):
    site, pools = two_sites(quota_a=8)
    pinned = JobShape(2, 7.45, site="A")
    source = ScriptedSource(DemandSnapshot(waiting=Counter({pinned: 8})))
    ctrl = DaskDemandController(site, source=source, interval=1)
    with caplog.at_level(logging.INFO, logger="cobald.runtime"):
        await ctrl.regulate()
        await ctrl.regulate()
    step_pools(pools)
    assert cores_at(pools, "A") == 8 and cores_at(pools, "B") == 0
    assert caplog.text.count("4 job(s) for A wait: its quota of 8 cores is full") == 1


async def test_the_controller_maximum_and_site_quotas_both_hold():
    site, pools = two_sites(quota_a=24, quota_b=8)
    gpu = JobShape(4, 16, 1)
    reading = DemandSnapshot(waiting=Counter({WORKER: 30, gpu: 2}))
    ctrl = DaskDemandController(site, source=ScriptedSource(reading), interval=1, maximum=28)
    await ctrl.regulate()
    step_pools(pools)
    assert cores_at(pools, "A") <= 24 and cores_at(pools, "B") <= 8
    assert cores_at(pools, "A") + cores_at(pools, "B") <= 28


async def test_busy_drones_at_a_site_are_kept_whatever_the_routing():
    busy = [FakeDrone(4, state="busy") for _ in range(2)]
    site, pools = two_sites(b_drones=busy)
    reading = DemandSnapshot(running=2, running_shapes=Counter({JobShape(4, 16): 2}))
    ctrl = DaskDemandController(site, source=ScriptedSource(reading), interval=1, idle_time=0)
    await ctrl.regulate()
    step_pools(pools)
    assert all(drone.demand == 4 for drone in busy)
