"""Direct mode: tasks kept to a site are demand at that site, counted inside a real scheduler.

A real ``distributed`` scheduler and workers (in this process): tasks asking for
``resources={"site:hummel": 1}`` wait until a worker offering that resource (a hummel
drone's, drone-pilot.sh) joins; ``!DaskSchedulerDemand`` names the site for their slots and
leaves the rest of the scheduler's wish to any site.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from distributed import Client, Event, Scheduler, Worker

from tardis_sge_dask.demand.dask_scheduler import DaskSchedulerDemand
from tardis_sge_dask.demand.packing import JobShape

pytestmark = pytest.mark.integration

HUMMEL = JobShape(cores=1.0, site="hummel")


def wait_on(event_name: str, x: int) -> int:
    Event(event_name).wait(60)
    return x


async def poll_until(source, check, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        snapshot = await source.poll()
        if check(snapshot):
            return snapshot
        assert time.monotonic() < deadline, f"never {what}: last {snapshot}"
        await asyncio.sleep(0.2)


async def test_tasks_kept_to_a_site_are_demand_at_that_site():
    async with Scheduler(port=0, dashboard=False) as scheduler:
        source = DaskSchedulerDemand(scheduler.address, timeout=5)
        async with Client(scheduler.address, asynchronous=True) as client:
            release = Event("release", client=client)
            pinned = [
                client.submit(wait_on, "release", i, resources={"site:hummel": 1}, pure=False)
                for i in range(3)
            ]
            # no worker offers site:hummel: the three wait, each a 1-core slot at hummel
            snapshot = await poll_until(
                source, lambda s: s.waiting[HUMMEL] == 3, "three slots at hummel"
            )
            assert all(shape.site == "hummel" for shape in snapshot.waiting)
            # a PHYSnet drone's worker does not take them, and they stay hummel's demand
            async with Worker(
                scheduler.address, nthreads=1, name="physnet-1", resources={"site:PHYSnet": 1}
            ):
                await asyncio.sleep(0.5)
                assert (await source.poll()).waiting[HUMMEL] == 3
                # a hummel drone's 1-thread worker takes one at a time: two still wait there
                async with Worker(
                    scheduler.address, nthreads=1, name="hummel-1", resources={"site:hummel": 1}
                ):
                    await poll_until(
                        source, lambda s: s.waiting[HUMMEL] == 2, "two slots at hummel"
                    )
                    await release.set()
                    assert await client.gather(pinned) == [0, 1, 2]
                    await poll_until(source, lambda s: not s.waiting[HUMMEL], "no demand at hummel")
