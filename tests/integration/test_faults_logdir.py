"""A full ``LogDirectory`` (the drones' job output) under a running ``python -m cobald.daemon``.

The drone job script travels on qsub's stdin, so the daemon itself writes nothing there;
the batch job does, when it starts. The directory is a tiny tmpfs with neither space nor
inodes left. Measured on Grid Engine 8.1.9: qsub accepts the job, the job cannot open
its output file and goes to ``Eqw`` (``can't open output file ...: No space left on
device``), its accounting says ``failed 26 : opening input/output file``. The daemon
takes such a drone down and tries a new one; once the directory has room, drones run.
The figures are those of test_faults_daemon.py.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.daemon import CobaldDaemon, unified_config, unique_site, wait_until
from tests.helpers.site_sections import sge_site_section
from tests.integration.test_faults_daemon import SGE, Site, report, settled_figures

pytestmark = pytest.mark.integration


def fill_with_a_full_tmpfs(directory: Path) -> None:
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k,nr_inodes=3", "tmpfs", str(directory)],
        check=True,
    )
    index = 0
    while True:  # every inode, then every block
        try:
            (directory / f"filler{index}").touch()
        except OSError:
            break
        index += 1
    with pytest.raises(OSError), open(directory / "filler0", "wb") as filler:
        filler.write(b"\0" * 65536)
        filler.flush()


@pytest.fixture
def logdir_site(sge, tmp_path):
    name = unique_site("flog")
    logs = tmp_path / "logs"
    logs.mkdir()
    config, demand = unified_config(
        tmp_path, site=name, adapter="SGE", site_section=sge_site_section(logs), quota=4
    )
    daemon = CobaldDaemon(config)
    yield Site(SGE, name, daemon, demand, tmp_path / "drones.db", {}), logs
    daemon.stop()
    SGE.remove(name.lower())
    if subprocess.run(["mountpoint", "-q", str(logs)]).returncode == 0:
        subprocess.run(["umount", str(logs)], check=True)


def running(site: Site) -> int:
    return sum(job["state"] == "r" for job in site.batch.jobs(site.name.lower()).values())


def test_a_full_log_directory_loses_no_drone(logdir_site):
    site, logs = logdir_site
    started = time.monotonic()
    fill_with_a_full_tmpfs(logs)
    site.daemon.start()
    site.demand.write_text("2")
    wait_until(
        lambda: "opening input/output file" in site.daemon.log(),
        120,
        "a drone's job to end for want of its output file",
        site.daemon,
    )
    before = site.figures()
    failed_jobs = site.daemon.log().count("opening input/output file")
    subprocess.run(["umount", str(logs)], check=True)
    # the drones in Eqw are taken down, new ones find room
    wait_until(lambda: running(site) == 2 or None, 180, "2 running drones", site.daemon)
    after = settled_figures(site, 2, 60, seconds=5)
    submitted = site.daemon.log().count(": submitted as ")
    print(
        f"\njobs ended for want of their output file: {failed_jobs}; submissions in all:"
        f" {submitted}; running at the end: {running(site)}"
    )
    report("LogDirectory full, then with room", site, before, after, started)
    assert after == {
        "drones": 2, "duplicates": 0, "orphans": 0, "confused": 0, "daemon alive": True
    }  # fmt: skip
