"""The drone registry's directory made read-only under a running ``python -m cobald.daemon``.

Root ignores permission bits, and an immutable directory (``chattr +i``) is not enough:
once SQLite's ``-wal`` and ``-shm`` files exist it keeps writing into them (measured: 4
drones recorded meanwhile, no error). So the directory is bind-mounted read-only over
itself, as a file system remounted read-only after an error is: the file cannot be
written at all. Meanwhile the daemon submits new drones on the real Grid Engine.
Wanted: one error line naming the file, the daemon alive, and once the directory is
writable again every drone in the registry. The figures are those of
test_faults_daemon.py.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.daemon import CobaldDaemon, unified_config, unique_site, wait_until
from tests.helpers.site_sections import sge_site_section
from tests.integration.test_faults_daemon import SGE, Site, report, settled

pytestmark = pytest.mark.integration


def read_only(directory: Path, on: bool) -> None:
    if on:
        subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(directory)], check=True)
    elif subprocess.run(["mountpoint", "-q", str(directory)]).returncode == 0:
        subprocess.run(["umount", str(directory)], check=True)


@pytest.fixture
def registry_site(sge, tmp_path):
    name = unique_site("freg")
    config, demand = unified_config(
        tmp_path, site=name, adapter="SGE", site_section=sge_site_section(tmp_path), quota=10
    )
    # the registry alone in its directory: the jobs' logs and the daemon's go elsewhere
    registry = tmp_path / "registry" / "drones.db"
    registry.parent.mkdir()
    config.write_text(config.read_text().replace(str(tmp_path / "drones.db"), str(registry)))
    daemon = CobaldDaemon(config)
    yield Site(SGE, name, daemon, demand, registry, {})
    read_only(registry.parent, False)
    daemon.stop()
    SGE.remove(name.lower())


def test_a_read_only_registry_directory_loses_no_drone(registry_site: Site):
    site = registry_site
    started = time.monotonic()
    site.daemon.start()
    site.demand.write_text("2")
    wait_until(settled(site, 2), 120, "2 registered drones", site.daemon)
    before = site.figures()
    try:
        read_only(site.registry.parent, True)
        with pytest.raises(OSError):
            (site.registry.parent / "probe").touch()
        # two drones more while nothing can be written to the registry
        site.demand.write_text("4")
        wait_until(lambda: len(site.drone_jobs()) == 4 or None, 120, "4 drone jobs", site.daemon)
        time.sleep(10)  # heartbeats and state changes meet the read-only directory
        assert site.daemon.alive, site.daemon.log()[-3000:]
        # the registry itself is not read here: a read-only WAL database may refuse readers
        jobs_while_read_only = len(site.drone_jobs())
    finally:
        read_only(site.registry.parent, False)
    after = wait_until(settled(site, 4), 120, "4 registered drones", site.daemon)
    for _ in range(5):
        time.sleep(1)
        after = site.figures()
    errors = [line for line in site.daemon.log().splitlines() if " ERROR " in line]
    print(f"\nwhile read-only: {jobs_while_read_only} drones in Grid Engine; error lines:")
    for line in errors:
        print(line)
    report("registry directory read-only, then writable", site, before, after, started)
    assert len(errors) == 1 and f"drone registry {site.registry} cannot be written" in errors[0]
    assert "written again: no drone state lost" in site.daemon.log()
    assert "Traceback" not in site.daemon.log()
    assert after == {
        "drones": 4, "duplicates": 0, "orphans": 0, "confused": 0, "daemon alive": True
    }  # fmt: skip
