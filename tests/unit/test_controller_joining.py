"""Drones whose job has started but which TARDIS has not integrated yet ("joining").

Found end to end on Grid Engine (tests/integration/test_end_to_end_sge.py): a drone's Dask
worker joins the scheduler and computes before TARDIS's next heartbeats take the drone
through Integrate/Integrating to Available. In that window the drone's supply is still 0,
the scheduler no longer asks for workers, and the controller used to treat the drone like
one still queued — the pool released it and TARDIS drained a worker that was computing.
"""

from __future__ import annotations

from tardis.resources.dronestates import IntegratingState

from tardis_sge_dask.pool import release_order
from tests.unit.test_controller import Clock, FakeDrone, ScriptedSource, controller, make_pool
from tests.unit.test_controller import waiting as waiting_jobs


class JoiningDrone(FakeDrone):
    """A drone whose batch job runs while TARDIS still integrates it: supply 0."""

    def __init__(self, cores: float = 8):
        super().__init__(cores, state="queued")
        self.state = IntegratingState()

    supply = property(lambda self: 0.0)


async def test_a_joining_drone_is_kept_when_its_worker_took_the_waiting_work():
    joining = JoiningDrone()
    pool = make_pool("idefix.q", 8, joining)
    # the worker connected and runs the tasks: nothing waits any more
    ctrl = controller(pool, ScriptedSource(waiting_jobs(0, running=4)), idle_time=300)
    await ctrl.regulate()
    pool.adjust()
    assert pool.demand == 8 and joining.demand == 8


async def test_a_joining_drone_absorbs_the_job_it_was_started_for():
    pool = make_pool("idefix.q", 8, JoiningDrone())
    ctrl = controller(pool, ScriptedSource(waiting_jobs(4)))
    await ctrl.regulate()
    # four 2-core workers fill one 8-core drone: the joining one, not a second drone
    assert pool.demand == 8


async def test_a_drone_that_never_joins_is_protected_only_for_the_idle_time():
    clock = Clock()
    stuck = JoiningDrone()
    pool = make_pool("idefix.q", 8, stuck)
    ctrl = controller(pool, ScriptedSource(waiting_jobs(0)), idle_time=60, clock=clock)
    await ctrl.regulate()
    assert pool.demand == 8
    clock.now += 61
    await ctrl.regulate()
    pool.adjust()
    assert pool.demand == 0 and stuck.demand == 0


def test_queued_drones_are_released_before_joining_ones():
    queued, joining, idle = FakeDrone(state="queued"), JoiningDrone(), FakeDrone(state="idle")
    assert sorted([idle, joining, queued], key=release_order) == [queued, joining, idle]
