"""A user picks a site: ``OverlayCluster(site=...)`` and ``jobqueue.overlay.site``.

The worker job carries ``TardisSite = "<site>"`` and requires the drone's
``TardisDroneSite`` to equal it; ``!CondorQueueDemand`` reads ``TardisSite`` into
``JobShape.site`` without parsing ``Requirements``. The job ads are the recorded ones of
a real dask-jobqueue worker (tests/fixtures/htcondor/recorded-23.9) with the header
``OverlayCluster`` renders now, matched as the negotiator would with classad2.
"""

from __future__ import annotations

import classad2
import dask
import pytest

from tardis_sge_dask.dask.cluster import OverlayCluster
from tardis_sge_dask.demand.htcondor import (
    CondorQueueDemand,
    job_shape,
    parse_ads,
    summarise,
)
from tardis_sge_dask.demand.packing import JobShape
from tardis_sge_dask.pilot.startd_config import render_startd_config
from tests.unit.test_startd_config import SMALL_DASK_JOB, job_ad, machine_ad, settings


def overlay_header(**kwargs) -> dict[str, str]:
    cluster = OverlayCluster(
        cores=2, memory="4GB", disk="4GB",
        scheduler_options={"dashboard_address": ":0", "port": 0}, **kwargs,
    )  # fmt: skip
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    return dict(line.split(" = ", 1) for line in script.splitlines() if " = " in line)


def worker_job(header: dict[str, str]) -> classad2.ClassAd:
    """The recorded worker job, with what condor_submit makes of this header's choice."""
    ad = job_ad(SMALL_DASK_JOB)
    ad["Requirements"] = classad2.ExprTree(header["Requirements"])
    for key, value in header.items():
        if key.startswith("MY."):
            ad[key[3:]] = classad2.ExprTree(value)
    return ad


def drone(site: str | None, machine_type: str | None = "sge-4core") -> classad2.ClassAd:
    return machine_ad(render_startd_config(settings(site=site, machine_type=machine_type)))


def test_a_job_for_a_site_runs_only_on_that_sites_drones():
    job = worker_job(overlay_header(site="PHYSnet"))
    assert drone("PHYSnet").symmetricMatch(job)
    assert not drone("hummel").symmetricMatch(job)
    assert not drone(None).symmetricMatch(job)  # a drone that does not say where it is


def test_without_a_site_a_job_runs_at_any_site():
    job = worker_job(overlay_header())
    assert "TardisSite" not in job
    assert all(drone(site).symmetricMatch(job) for site in ("PHYSnet", "hummel", None))


def test_the_site_comes_from_jobqueue_yaml_and_the_keyword_wins():
    with dask.config.set({"jobqueue.overlay.site": "hummel"}):
        assert overlay_header()["MY.TardisSite"] == '"hummel"'
        assert overlay_header(site="PHYSnet")["MY.TardisSite"] == '"PHYSnet"'


def test_the_users_own_requirements_still_apply_with_a_site():
    header = overlay_header(site="PHYSnet", job_extra_directives={"Requirements": "false"})
    assert "TardisDroneSite" in header["Requirements"]
    assert not drone("PHYSnet").symmetricMatch(worker_job(header))


@pytest.mark.parametrize("site", ['PHYS"net', "PHYS\\net", "PHYS\nnet"])
def test_a_site_no_drone_could_advertise_is_refused(site):
    with pytest.raises(ValueError, match="site"):
        overlay_header(site=site)


def test_the_demand_source_reads_the_site_each_job_asks_for():
    header = overlay_header(site="PHYSnet")
    pinned = worker_job(header)
    anywhere = job_ad(SMALL_DASK_JOB)
    shape = job_shape(anywhere)
    assert shape.site == ""
    assert job_shape(pinned) == JobShape(shape.cores, shape.memory_gb, shape.gpus, "PHYSnet")


@pytest.mark.parametrize(
    "attribute",
    ["TardisSite = undefined", "TardisSite = 7", 'TardisSite = ""', "TardisSite = MY.Nowhere"],
)
def test_a_site_attribute_that_names_no_site_means_any_site(attribute):
    text = f"ClusterId = 5\nProcId = 0\nJobStatus = 1\nRequestCpus = 1\n{attribute}\n"
    (shape,) = summarise(parse_ads(text)).waiting
    assert shape.site == ""


async def test_every_condor_q_format_asks_for_the_site_and_carries_it():
    from tests.unit.test_condor_q import RecordingExecutor

    for output_format in ("long", "json", "af"):
        executor = RecordingExecutor({None: ""})
        await CondorQueueDemand(executor=executor, output_format=output_format).poll()
        assert "TardisSite" in executor.commands[0]
    long = 'ClusterId = 5\nProcId = 0\nJobStatus = 1\nRequestCpus = 2\nTardisSite = "hummel"\n'
    json_ = '[{"ClusterId": 5, "ProcId": 0, "JobStatus": 1, "RequestCpus": 2,'
    json_ += ' "TardisSite": "hummel"}]'
    af = "5\t0\t1\t2\tundefined\tundefined\tundefined\tundefined\thummel\tundefined"
    for text, output_format in ((long, "long"), (json_, "json"), (af, "af")):
        (shape,) = summarise(parse_ads(text, output_format)).waiting
        assert shape == JobShape(2.0, 0.0, 0, "hummel"), output_format


def test_direct_mode_names_the_site_of_tasks_kept_to_it():
    from tardis_sge_dask.demand.dask_scheduler import wish_to_snapshot

    workers = {
        "tcp://a": {"status": "running", "nthreads": 2, "processing": 2,
                    "resources": {"site:hummel": 2.0}},
        "tcp://b": {"status": "running", "nthreads": 2, "processing": 0,
                    "resources": {"site:PHYSnet": 2.0}},
    }  # fmt: skip
    # the scheduler wants 5 workers of 2 threads: 6 threads more than the 4 it has
    state = {"target": 5, "workers": workers}
    # hummel: 1 task no worker can run, 5 assigned to its 2 threads -> 4 slots there
    snapshot = wish_to_snapshot(state, site_tasks={"hummel": [1, 5], "PHYSnet": [0, 1]})
    assert snapshot.waiting == {JobShape(1.0, site="hummel"): 4, JobShape(1.0): 2}


def test_the_real_schedd_kept_the_site_of_a_recorded_pinned_job():
    """condor_submit of OverlayCluster(site="PHYSnet"), as the schedd holds the job."""
    pinned = job_ad("pinned")
    assert job_shape(pinned).site == "PHYSnet"
    assert drone("PHYSnet").symmetricMatch(pinned)
    # the recording's own drone is at the site "record": the job stayed idle there
    assert not drone("record", "onecore").symmetricMatch(pinned)
