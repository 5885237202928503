"""1,000 queued drones in the real daemon on the real Grid Engine: one listing per window,
and at demand 0 a few bulk ``qdel`` commands instead of one per drone.

The drones go to a queue made for this test and disabled (tests/helpers/sge_queue.py), so
they stay queued; every Grid Engine command of the daemon is logged by a shim on its PATH.
Counts are asserted, never times (bench/bench_scale.py measures those). About 3 minutes.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import pytest

from tardis_sge_dask.sites.removals import BULK_SIZE, WINDOW
from tests.helpers.daemon import (
    CobaldDaemon,
    one_core_site,
    unified_config,
    unique_site,
    wait_until,
)
from tests.helpers.sge_queue import command_shims, disabled_queue, jobs_named, logged_calls

pytestmark = pytest.mark.integration

DRONES = 1000
MAX_AGE = 5  # listing_max_age
HEARTBEAT = 10  # every drone asks for its status this often
STRETCH = 30  # seconds of listing calls looked at


def listing_times(log: Path) -> list[float]:
    return [
        float(line.split()[0])
        for line in log.read_text().splitlines()
        if line.split()[1:] == ["qstat", "-xml"]
    ]


def test_a_thousand_queued_drones_share_one_listing_per_window(sge, tmp_path, monkeypatch):
    site = unique_site("tsdscale")
    log = tmp_path / "commands.log"
    with disabled_queue(f"{site}.q", tmp_path, job_prefix=site) as queue:
        logs = tmp_path / "logs"
        logs.mkdir()
        section = one_core_site({}, logs, {"Queue": queue, "Walltime": 3600})
        section["listing_max_age"] = MAX_AGE
        config, demand = unified_config(
            tmp_path,
            site=site,
            adapter="SGE",
            site_section=section,
            quota=DRONES,
            heartbeat=HEARTBEAT,
        )
        monkeypatch.setenv("PATH", f"{command_shims(tmp_path, log)}:{os.environ['PATH']}")
        daemon = CobaldDaemon(config).start()
        try:
            demand.write_text(str(DRONES))
            wait_until(
                lambda: len(jobs_named(site)) >= DRONES, 600, f"{DRONES} queued jobs", daemon
            )
            # every drone past its first status question, then a stretch of heartbeats
            time.sleep(HEARTBEAT + 5)
            since = time.time()
            time.sleep(STRETCH)
            until = time.time()
            stretch = [at for at in listing_times(log) if since <= at < until]
            others = logged_calls(log, since, until)
            # 1,000 drones asked about 3,000 times; one listing answered each window
            assert 1 <= len(stretch) <= STRETCH // MAX_AGE + 1, stretch
            gaps = [later - earlier for earlier, later in itertools.pairwise(stretch)]
            assert all(gap > MAX_AGE - 0.5 for gap in gaps), gaps
            # nothing was missing from the listing, so nothing was looked up job by job
            assert set(others) == {"qstat -xml"}, others
            assert len(jobs_named(site)) == DRONES

            demand.write_text("0")
            zero = time.time()
            wait_until(lambda: not jobs_named(site), 600, "every job cancelled", daemon)
            assert daemon.alive
            # removals share commands (sites/removals.py): the drones ask within about a
            # heartbeat of each other, so at most a bulk per window over two heartbeats,
            # plus the full bulks, plus a few stragglers; one qdel per drone was 1,000
            qdels = sum(
                count
                for command, count in logged_calls(log, zero).items()
                if command.startswith("qdel")
            )
            most = DRONES // BULK_SIZE + int(2 * HEARTBEAT / WINDOW) + 5
            print(
                f"{qdels} qdel commands removed {DRONES} drones (at most {most} allowed),"
                f" all gone {time.time() - zero:.0f} s after demand 0"
            )
            assert 1 <= qdels <= most
        finally:
            daemon.stop()
