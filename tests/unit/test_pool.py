"""ElasticFactoryPool: queued drones are let go when demand drops, busy drones last."""

from __future__ import annotations

import trio

from tardis_sge_dask.pool import ElasticFactoryPool

from .test_controller import FakeDrone


def pool_with(*drones, interval=30):
    return ElasticFactoryPool(*drones, factory=lambda: FakeDrone(8), interval=interval,
                              machine_type="idefix.q")


def test_queued_drones_are_released_with_demand_zero():
    queued = [FakeDrone(state="queued") for _ in range(3)]
    pool = pool_with(*queued)
    pool.demand = 0
    pool.adjust()
    # each released drone gets demand 0: TARDIS's BootingState then cancels the batch job
    assert [d.demand for d in queued] == [0, 0, 0]
    assert pool.drones == []


def test_shrinking_takes_queued_then_idle_and_keeps_busy():
    busy, idle, queued = FakeDrone(state="busy"), FakeDrone(state="idle"), FakeDrone()
    pool = pool_with(busy, idle, queued)
    pool.demand = 16
    pool.adjust()
    assert (queued.demand, idle.demand, busy.demand) == (0, 8, 8)
    pool.demand = 8
    pool.adjust()
    assert (idle.demand, busy.demand) == (0, 8)


def test_growing_creates_whole_drones_for_the_missing_demand():
    pool = pool_with()
    pool.demand = 20
    pool.adjust()
    assert len(pool.drones) == 3
    pool.adjust()
    assert len(pool.drones) == 3


def test_a_factory_child_without_demand_does_not_abort_the_daemon():
    pool = ElasticFactoryPool(factory=lambda: FakeDrone(0), interval=1)
    pool.demand = 8
    pool.adjust()  # stock FactoryPool asserts here
    assert pool.drones == []


def test_the_interval_is_configurable_and_run_adjusts():
    pool = pool_with(interval=0.01)
    pool.demand = 8

    async def main():
        with trio.move_on_after(5):
            while not pool.drones:
                await trio.sleep(0.01)

    async def both():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pool.run)
            await main()
            nursery.cancel_scope.cancel()

    trio.run(both)
    assert pool.interval == 0.01
    assert len(pool.drones) == 1
