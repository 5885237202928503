"""``adapter: Dask`` against a real distributed scheduler and real workers (in-process)."""

from __future__ import annotations

import asyncio

import pytest
from distributed import Client, Scheduler, Worker
from tardis.interfaces.batchsystemadapter import MachineStatus
from tardis.utilities.attributedict import AttributeDict

from tardis_sge_dask.batchsystems.dask import DaskAdapter
from tardis_sge_dask.demand.dask_scheduler import DaskSchedulerDemand
from tardis_sge_dask.demand.sources import DemandSourceError


def adapter_for(address: str) -> DaskAdapter:
    # max_age 0: every call asks the scheduler, so the test sees changes at once
    return DaskAdapter(AttributeDict(scheduler_address=address, max_age=0, timeout=5))


async def wait_for(predicate, what: str, attempts: int = 500):
    for _ in range(attempts):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def slow_inc(x):
    import time

    time.sleep(0.3)
    return x + 1


async def test_drone_lifecycle_on_a_real_scheduler():
    async with Scheduler(port=0, dashboard=False) as scheduler:
        adapter = adapter_for(scheduler.address)
        assert await adapter.get_machine_status("drone-a") is MachineStatus.NotAvailable
        async with (
            Worker(scheduler.address, nthreads=1, name="drone-a") as drone_a,
            Worker(scheduler.address, nthreads=1, name="drone-b"),
            Client(scheduler.address, asynchronous=True) as client,
        ):
            assert await adapter.get_machine_status("drone-a") is MachineStatus.Available
            assert await adapter.get_allocation("drone-a") == 0.0

            # busy threads show up as allocation
            futures = client.map(slow_inc, range(8))

            async def busy():
                return await adapter.get_allocation("drone-a") == 1.0

            await wait_for(busy, "drone-a busy")
            assert await adapter.get_utilisation("drone-a") <= 1.0
            results = await client.gather(futures)

            # drain = retire through the scheduler: the data moves, nothing is lost
            kept = client.map(slow_inc, range(100, 104), workers=[drone_a.address])
            await client.gather(kept)
            await adapter.drain_machine("drone-a")

            async def drained():
                return await adapter.get_machine_status("drone-a") is MachineStatus.Drained

            await wait_for(drained, "drone-a drained")
            assert await adapter.get_machine_status("drone-b") is MachineStatus.Available
            assert await client.gather(kept) == [101, 102, 103, 104]
            assert results == list(range(1, 9))
            assert drone_a.status.name in ("closed", "closing", "closing_gracefully")


async def test_unreachable_scheduler_keeps_the_last_known_status():
    async with Scheduler(port=0, dashboard=False) as scheduler:
        address = scheduler.address
        adapter = adapter_for(address)
        async with Worker(address, nthreads=1, name="drone-c"):
            assert await adapter.get_machine_status("drone-c") is MachineStatus.Available
    # scheduler gone: no exception reaches TARDIS, the drone is not shut down for it
    assert await adapter.get_machine_status("drone-c") is MachineStatus.Available


async def test_direct_mode_source_sees_queued_work_and_survives_a_dead_scheduler():
    async with Scheduler(port=0, dashboard=False) as scheduler:
        source = DaskSchedulerDemand(scheduler.address, timeout=5)
        assert (await source.poll()).waiting_jobs == 0
        async with Client(scheduler.address, asynchronous=True) as client:
            futures = client.map(slow_inc, range(40))

            async def queued():
                return (await source.poll()).waiting_jobs > 0

            await wait_for(queued, "scheduler asks for workers")
            async with Worker(scheduler.address, nthreads=2, name="drone-d"):
                assert len(await client.gather(futures)) == 40
        address = scheduler.address

    with pytest.raises(DemandSourceError, match="unreachable"):
        await DaskSchedulerDemand(address, timeout=2).poll()
