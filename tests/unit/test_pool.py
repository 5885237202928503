"""ElasticFactoryPool: queued drones are let go when demand drops, busy drones last."""

from __future__ import annotations

import trio
import trio.testing

from tardis_sge_dask.pool import GROWTH_CHECK_INTERVAL, ElasticFactoryPool

from .test_controller import FakeDrone


def pool_with(*drones, interval=30):
    return ElasticFactoryPool(
        *drones, factory=lambda: FakeDrone(8), interval=interval, machine_type="idefix.q"
    )


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


def run_with_mock_clock(pool, scenario):
    """Runs the pool's loop and ``scenario(pool)`` on trio's virtual clock."""

    async def both():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pool.run)
            await scenario(pool)
            nursery.cancel_scope.cancel()

    trio.run(both, clock=trio.testing.MockClock(autojump_threshold=0))


def test_new_demand_gets_drones_at_once_not_at_the_next_interval():
    pool = pool_with(interval=30)
    created_after = []

    async def scenario(pool):
        await trio.sleep(5)  # the user scales up 5 s into a 30 s interval
        pool.demand = 16
        start = trio.current_time()
        while len(pool.drones) < 2:
            await trio.sleep(0.1)
        created_after.append(trio.current_time() - start)

    run_with_mock_clock(pool, scenario)
    assert created_after[0] <= GROWTH_CHECK_INTERVAL + 0.1


def test_a_dip_in_demand_waits_for_the_interval_before_drones_go():
    pool = pool_with(interval=30)
    pool.demand = 16
    pool.adjust()
    kept_for = []

    async def scenario(pool):
        await trio.sleep(5)
        pool.demand = 8
        start = trio.current_time()
        while len(pool.drones) > 1:
            await trio.sleep(0.1)
        kept_for.append(trio.current_time() - start)

    run_with_mock_clock(pool, scenario)
    # released only at the pool's own adjustment, 30 s after the loop started
    assert 24 <= kept_for[0] <= 26
