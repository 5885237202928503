"""Packing waiting worker jobs onto machine types: what a user asking for workers gets."""

from collections import Counter

from tardis_sge_dask.demand.packing import JobShape, MachineShape, pack

IDEFIX = MachineShape("idefix.q", cores=8, memory_gb=32)
EPYX = MachineShape("epyx.q", cores=64, memory_gb=256)
GRAPHIX = MachineShape("graphix.q", cores=16, memory_gb=64, gpus=2)


def test_four_small_workers_share_one_drone():
    result = pack([JobShape(2, 8)] * 4, [IDEFIX])
    assert result.drones == {"idefix.q": 1}
    assert not result.unfit


def test_dask_jobqueue_memory_in_decimal_gigabytes_still_fits_four():
    # 8 GB in dask-jobqueue is 8e9 bytes = 7.45 GiB
    result = pack([JobShape(2, 7.45)] * 8, [IDEFIX])
    assert result.drones == {"idefix.q": 2}


def test_memory_bound_jobs_need_more_drones_than_cores_suggest():
    result = pack([JobShape(1, 16)] * 4, [IDEFIX])
    assert result.drones == {"idefix.q": 2}


def test_a_job_that_fits_nowhere_is_reported_not_counted():
    result = pack([JobShape(2, 8), JobShape(128, 8)], [IDEFIX, EPYX])
    assert result.unfit == Counter({JobShape(128, 8): 1})
    assert result.total_drones == 1


def test_small_jobs_prefer_small_machines_without_gpus():
    result = pack([JobShape(2, 8)] * 3, [EPYX, GRAPHIX, IDEFIX])
    assert result.drones == {"epyx.q": 0, "graphix.q": 0, "idefix.q": 1}


def test_gpu_job_gets_a_gpu_machine_and_small_jobs_share_its_leftover_room():
    result = pack([JobShape(2, 8)] * 3 + [JobShape(2, 8, gpus=1)], [EPYX, GRAPHIX, IDEFIX])
    assert result.drones == {"epyx.q": 0, "graphix.q": 1, "idefix.q": 0}


def test_big_job_goes_to_the_machine_that_can_hold_it():
    result = pack({JobShape(32, 100): 2}, [IDEFIX, EPYX])
    assert result.drones == {"idefix.q": 0, "epyx.q": 1}


def test_leftover_room_is_filled_by_smaller_jobs():
    # one 6-core job leaves 2 cores/24 GB free: the 2-core job goes there
    result = pack([JobShape(6, 8), JobShape(2, 8)], [IDEFIX])
    assert result.drones == {"idefix.q": 1}


def test_thousands_of_equal_workers_are_cheap():
    result = pack({JobShape(1, 2): 100_000}, [IDEFIX])
    assert result.drones == {"idefix.q": 12_500}
    assert result.cores([IDEFIX]) == 100_000


def test_machine_shape_from_tardis_meta_data():
    machine = MachineShape.from_meta_data("graphix.q", {"Cores": 16, "Memory": 64, "GPUs": 2})
    assert (machine.cores, machine.memory_gb, machine.gpus) == (16, 64, 2)
    assert machine.holds(JobShape(4, 16, 1)) == 2
