"""Held and oversize Dask-worker jobs in the real overlay schedd are logged and not counted.

Real: the overlay central manager's schedd (HTCondor 23.9, services/htcondor-up.sh), the
submit descriptions of ``OverlayCluster(...).job_script()`` (dask-jobqueue 0.9.0),
``condor_submit`` and ``condor_hold`` as the physicist account, ``!CondorQueueDemand``'s
condor_q through TARDIS's ShellExecutor as the daemon runs it, and one step of
``DaskDemandController`` packing the reading onto machine types. No drone is needed: the
jobs only wait, and a requirement no machine has keeps them waiting even if a drone of
another test joins the shared pool meanwhile.
"""

from __future__ import annotations

import fcntl
import logging
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tardis.utilities.executors.shellexecutor import ShellExecutor

from tardis_sge_dask.dask import OverlayCluster
from tardis_sge_dask.demand.controller import DaskDemandController
from tardis_sge_dask.demand.htcondor import DEFAULT_CONSTRAINT, CondorQueueDemand
from tardis_sge_dask.demand.packing import JobShape
from tardis_sge_dask.pool import ElasticFactoryPool
from tests.helpers import overlay
from tests.helpers.daemon import wait_until
from tests.integration.test_overlay import overlay_pool  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration

#: other tests start drones and remove every job of the physicist account: while this
#: test's jobs exist, they wait for this lock (and this test for theirs)
OVERLAY_LOCK = Path("/tmp/tsd-overlay.lock")
MACHINE_TYPES = {"onecore": {"Cores": 1, "Memory": 2}, "quad": {"Cores": 4, "Memory": 16}}
NOWHERE = '(TARGET.Machine == "tsd-no-such-machine")'
#: dask-jobqueue's request for 2 cores / "2GB": floor(2e9 / 2**20) MB
WORKER = JobShape(2, round(1907 / 1024, 3))
#: 64 cores / "512GB": more than every machine type
OVERSIZE = JobShape(64, round(488281 / 1024, 3))
#: htcdaskgateway's literal request_cpus = 2, request_memory = 4GB
GATEWAY = JobShape(2, 4.0)


@pytest.fixture
def overlay_lock() -> Iterator[None]:
    with OVERLAY_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def job_script(**kwargs: object) -> str:
    """What dask-jobqueue hands condor_submit for one worker of such a cluster."""
    cluster = OverlayCluster(
        **kwargs, job_extra_directives={"Requirements": NOWHERE},
        scheduler_options={"host": "127.0.0.1", "dashboard_address": None},
    )  # fmt: skip
    try:
        return cluster.job_script()
    finally:
        cluster.close()


def submit(directory: Path, name: str, text: str) -> int:
    path = directory / name
    path.write_text(text)
    shutil.chown(path, overlay.SUBMIT_USER, overlay.SUBMIT_USER)
    out = subprocess.run(
        ["runuser", "-u", overlay.SUBMIT_USER, "--", "condor_submit", str(path)],
        capture_output=True, text=True, check=True, timeout=60, cwd=directory,
    ).stdout  # fmt: skip
    return int(re.search(r"submitted to cluster (\d+)", out).group(1))


def job_status(cluster: int) -> str:
    return overlay.condor("condor_q", str(cluster), "-af", "JobStatus").strip()


async def test_held_and_oversize_jobs_are_logged_and_not_counted(
    overlay_pool,  # noqa: F811 - the imported fixture
    overlay_lock,
    caplog,
):
    directory = overlay.owned_directory("tsd-demand-", overlay.SUBMIT_USER, 0o755)
    clusters: list[int] = []
    try:
        worker = job_script(cores=2, memory="2GB", disk="1GB")
        # one condor_submit per worker, as dask-jobqueue does it
        idle = [submit(directory, f"worker-{i}.submit", worker) for i in range(3)]
        clusters += idle
        held = submit(directory, "held.submit", worker)
        clusters.append(held)
        oversize = submit(
            directory, "oversize.submit", job_script(cores=64, memory="512GB", disk="10GB")
        )
        clusters.append(oversize)
        # an htcdaskgateway worker as its HTCGatewayCluster writes it, and a non-Dask job
        gateway = submit(
            directory,
            "gateway.submit",
            (
                "executable = /bin/sleep\narguments = 600\nrequest_cpus = 2\n"
                "request_memory = 4GB\n+isDaskJob = True\n"
                f"requirements = (isDaskNode == True) && {NOWHERE}\nqueue 1\n"
            ),
        )
        clusters.append(gateway)
        plain = submit(
            directory,
            "plain.submit",
            (
                "executable = /bin/sleep\narguments = 600\nrequest_cpus = 1\n"
                f"request_memory = 1024\nrequirements = {NOWHERE}\nqueue 1\n"
            ),
        )
        clusters.append(plain)
        subprocess.run(
            ["runuser", "-u", overlay.SUBMIT_USER, "--", "condor_hold", str(held)],
            capture_output=True,
            check=True,
            timeout=60,
        )
        assert job_status(held) == "5"

        # the daemon's source with its default constraint, narrowed to this test's jobs:
        # the schedd is shared
        mine = " || ".join(f"ClusterId == {cluster}" for cluster in clusters)
        source = CondorQueueDemand(
            executor=ShellExecutor(), constraint=f"{DEFAULT_CONSTRAINT} && ({mine})"
        )
        pool = ElasticFactoryPool(factory=_no_drones, interval=1)
        controller = DaskDemandController(
            pool, source=source, interval=1, machine_types=MACHINE_TYPES
        )
        with caplog.at_level(logging.INFO):
            await controller.regulate()

        snapshot = await source.poll()
        assert snapshot.waiting == {WORKER: 3, OVERSIZE: 1, GATEWAY: 1}
        assert (snapshot.running, snapshot.held) == (0, 1)
        # the held one is named with its reason, the oversize one with its shape
        assert f"Dask worker job {held}.0 is held (via condor_hold" in caplog.text
        assert f"fit no machine type (not counted): 1x {OVERSIZE}" in caplog.text
        # three 2-core workers and the gateway's 2-core worker fill two 4-core drones; the
        # held worker would have needed a third, the oversize one fits none
        assert controller.wanted == {"onecore": 0, "quad": 2}
        assert pool.demand == 8
        assert not pool.drones
        assert "demand 8 cores: 5 waiting jobs, 0 running, 1 held" in caplog.text
    finally:
        if clusters:
            subprocess.run(["condor_rm", *map(str, clusters)], capture_output=True, timeout=60)
        shutil.rmtree(directory, ignore_errors=True)
    wait_until(
        lambda: not any(job_status(cluster) for cluster in clusters),
        60,
        "the test's jobs to leave the schedd",
    )


def _no_drones() -> None:
    raise AssertionError("the controller step must only set the demand, not start drones")
