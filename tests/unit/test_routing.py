"""Routing waiting jobs to sites: a job's own site, else the sites in the order of
preference within their quotas, spilling when a site is full or its drones stay queued."""

from __future__ import annotations

import math
from collections import Counter

from tardis_sge_dask.demand.packing import JobShape, MachineShape
from tardis_sge_dask.demand.plan import Census, SiteCensus, SlotCensus
from tardis_sge_dask.demand.routing import route

IDEFIX = MachineShape("idefix.q", 8, 32)
GRAPHIX = MachineShape("graphix.q", 16, 64, 2)
BATCH = MachineShape("batch", 4, 16)
WORKER = JobShape(2, 7.45)


def census(quota_a=math.inf, quota_b=math.inf, a=None, b=None):
    """Site A (Grid Engine: idefix.q, graphix.q) preferred over B (SLURM: batch)."""
    a = a or {}
    b = b or {}
    return Census(
        sites=(SiteCensus("A", quota_a), SiteCensus("B", quota_b)),
        slots=(
            SlotCensus("A", IDEFIX, **a.get("idefix.q", {})),
            SlotCensus("A", GRAPHIX, **a.get("graphix.q", {})),
            SlotCensus("B", BATCH, **b.get("batch", {})),
        ),
    )


def test_jobs_without_a_site_go_to_the_preferred_site_by_shape():
    jobs = Counter({WORKER: 8, JobShape(4, 16, 1): 2, JobShape(1, 1): 3})
    routing = route(jobs, census())
    # the GPU jobs share one graphix drone whose spare room takes small jobs; no GPU
    # machine is opened for jobs without GPUs while idefix.q fits them
    assert routing.needed == {("A", "idefix.q"): 2, ("A", "graphix.q"): 1, ("B", "batch"): 0}
    assert not routing.unfit and not routing.waiting


def test_a_full_quota_spills_to_the_next_site_with_a_reason():
    routing = route(Counter({WORKER: 20}), census(quota_a=16))
    # A holds two 8-core drones (8 workers); the other 12 need six 4-core drones at B
    assert routing.needed[("A", "idefix.q")] == 2
    assert routing.needed[("B", "batch")] == 6
    assert any("12 job(s) spill to B: A quota of 16 cores full" in d for d in routing.decisions)


def test_busy_and_leaving_drones_use_up_the_quota():
    busy = census(quota_a=24, a={"idefix.q": {"busy": 2, "leaving": 1}})
    routing = route(Counter({WORKER: 4}), busy)
    assert routing.needed[("A", "idefix.q")] == 0
    assert routing.needed[("B", "batch")] == 2


def test_idle_and_queued_drones_take_jobs_within_the_quota():
    # an idle and a queued drone are part of what the jobs need, not extra
    have = census(quota_a=16, a={"idefix.q": {"idle": 1, "starting": 1}})
    routing = route(Counter({WORKER: 8}), have)
    assert routing.needed[("A", "idefix.q")] == 2
    assert routing.needed[("B", "batch")] == 0


def test_a_job_for_a_full_site_waits_there_and_never_goes_elsewhere():
    jobs = Counter({JobShape(2, 7.45, site="A"): 12})
    routing = route(jobs, census(quota_a=16))
    assert routing.needed == {("A", "idefix.q"): 2, ("A", "graphix.q"): 0, ("B", "batch"): 0}
    assert routing.waiting == Counter({JobShape(2, 7.45, site="A"): 4})
    assert any("4 job(s) for A wait: its quota of 16 cores is full" in d for d in routing.decisions)


def test_a_job_for_the_second_site_goes_there_even_with_room_at_the_first():
    routing = route(Counter({JobShape(1, 2, site="B"): 5}), census())
    assert routing.needed[("B", "batch")] == 2
    assert routing.needed[("A", "idefix.q")] == 0


def test_pinned_jobs_take_the_room_before_jobs_without_a_site():
    jobs = Counter({JobShape(2, 7.45, site="A"): 4, WORKER: 4})
    routing = route(jobs, census(quota_a=8))
    assert routing.needed[("A", "idefix.q")] == 1
    assert routing.needed[("B", "batch")] == 2


def test_a_job_only_one_site_can_hold_goes_there_without_a_spill():
    gpu = JobShape(4, 16, 1)
    routing = route(Counter({gpu: 1}), census())
    assert routing.needed[("A", "graphix.q")] == 1
    # a 12-core job fits graphix.q at A only
    routing = route(Counter({JobShape(12, 10): 1}), census(quota_a=8))
    assert routing.waiting == Counter({JobShape(12, 10): 1})
    assert routing.needed[("B", "batch")] == 0


def test_an_unknown_site_or_an_impossible_shape_is_unfit():
    routing = route(
        Counter(
            {JobShape(1, 1, site="CERN"): 2, JobShape(64, 500): 1, JobShape(8, 8, site="B"): 1}
        ),
        census(),
    )
    assert routing.unfit == Counter(
        {JobShape(1, 1, site="CERN"): 2, JobShape(64, 500): 1, JobShape(8, 8, site="B"): 1}
    )
    assert any("no site 'CERN'" in d for d in routing.decisions)


def test_drones_queued_longer_than_spill_after_send_new_jobs_to_the_next_site():
    queued = census(a={"idefix.q": {"starting": 1, "oldest_starting": 400}})
    routing = route(Counter({WORKER: 12}), queued, spill_after=300)
    # the queued drone still takes four workers; the other eight go to B
    assert routing.needed[("A", "idefix.q")] == 1
    assert routing.needed[("B", "batch")] == 4
    assert any("drones queued longer than spill_after (300 s)" in d for d in routing.decisions)
    # not yet stuck: all at A
    routing = route(Counter({WORKER: 12}), queued, spill_after=600)
    assert routing.needed[("A", "idefix.q")] == 3


def test_jobs_return_to_the_preferred_site_when_it_frees():
    full = census(quota_a=16, a={"idefix.q": {"busy": 2}})
    assert route(Counter({WORKER: 4}), full).needed[("B", "batch")] == 2
    freed = census(quota_a=16, a={"idefix.q": {"idle": 2}})
    routing = route(Counter({WORKER: 4}), freed)
    assert routing.needed[("A", "idefix.q")] == 1
    assert routing.needed[("B", "batch")] == 0


def test_when_every_site_is_full_jobs_wait():
    routing = route(Counter({WORKER: 40}), census(quota_a=8, quota_b=8))
    assert routing.needed[("A", "idefix.q")] == 1
    assert routing.needed[("B", "batch")] == 2
    assert routing.waiting == Counter({WORKER: 32})
    assert any("wait: no site left" in d for d in routing.decisions)


def test_many_shapes_never_exceed_a_quota():
    shapes = [JobShape(c, m, g) for c in (1, 2, 3, 4, 8) for m in (1, 4, 15) for g in (0, 1)]
    for quota_a in (8, 16, 24, 40, 64):
        for quota_b in (4, 12, 20):
            jobs = Counter({shape: 3 for shape in shapes})
            c = census(quota_a=quota_a, quota_b=quota_b)
            routing = route(jobs, c)
            at_a = routing.needed[("A", "idefix.q")] * 8 + routing.needed[("A", "graphix.q")] * 16
            assert at_a <= quota_a
            assert routing.needed[("B", "batch")] * 4 <= quota_b
