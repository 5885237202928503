"""``status`` and ``sweep`` on the real Grid Engine and SLURM, next to a running daemon.

The daemon holds two drones in its registry. Beside them, jobs of the same user: two
named like this site's drones but unknown to the registry (as after a lost registry or
another daemon's), and foreign ones: a user's own job, a job of a site whose name
extends this one's, and a name with the site's prefix but not a drone uuid's shape.
Only the two orphans may be listed and removed.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import sge as qstat
from tests.helpers import slurm as sq
from tests.helpers.daemon import CobaldDaemon, unified_config, unique_site, wait_until
from tests.helpers.site_sections import sge_site_section, slurm_site_section

pytestmark = pytest.mark.integration

CLI = [str(Path(__file__).parent.parent.parent / ".venv" / "bin" / "tardis-sge-dask")]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def drone_like(site: str) -> str:
    return f"{site.lower()}-{uuid.uuid4().hex[:10]}"


def foreign_names(site: str) -> list[str]:
    return [f"{site}x-{uuid.uuid4().hex[:10]}", f"{site}-analysis", "analysis.sh"]


def qsub(name: str) -> str:
    out = subprocess.run(
        ["qsub", "-terse", "-N", name, "-b", "y", "-q", "all.q", "-o", "/dev/null",
         "-e", "/dev/null", "/bin/sleep", "600"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.strip()


def sbatch(name: str) -> str:
    out = subprocess.run(
        ["sbatch", "--parsable", f"--job-name={name}", "--partition=debug", "--output=/dev/null",
         "--wrap", "sleep 600"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.strip().split(";")[0]


@dataclass(frozen=True)
class Batch:
    name: str
    #: name prefix -> {job id: ...} of jobs that have not ended
    jobs: Callable[[str], dict]
    submit: Callable[[str], str]
    remove: Callable[[set[str]], object]


SGE = Batch(
    "Grid Engine",
    qstat.jobs,
    qsub,
    lambda ids: subprocess.run(["qdel", *ids], capture_output=True),
)
SLURM = Batch(
    "SLURM",
    sq.alive,
    sbatch,
    lambda ids: subprocess.run(["scancel", *ids], capture_output=True),
)


def sweep_scenario(batch: Batch, site: str, daemon: CobaldDaemon, demand: Path) -> None:
    daemon.start()
    demand.write_text("2")
    drones = set(
        wait_until(lambda: len(batch.jobs(site)) == 2 and batch.jobs(site), 90, "2 drones", daemon)
    )
    orphans = {batch.submit(drone_like(site)) for _ in range(2)}
    foreign = {batch.submit(name) for name in foreign_names(site)}
    try:
        listed = cli("status", str(daemon.config))
        assert listed.returncode == 0, listed.stderr
        rows = {line.split()[2]: line.split()[1] for line in listed.stdout.splitlines()[1:-1]}
        assert {job for job, state in rows.items() if state == "Orphan"} == orphans
        assert "removes them" in listed.stderr

        dry = cli("sweep", str(daemon.config))
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert dry.stdout.splitlines()[0].startswith("2 orphan job(s)")
        assert "dry run, nothing removed" in dry.stdout
        assert orphans <= set(batch.jobs(""))

        swept = cli("sweep", "--yes", str(daemon.config))
        assert swept.returncode == 0, swept.stdout + swept.stderr
        assert sum(line.endswith(": removed") for line in swept.stdout.splitlines()) == 2
        wait_until(lambda: not orphans & set(batch.jobs("")), 60, "the orphans to go", daemon)
        left = set(batch.jobs(""))
        assert drones | foreign <= left
        again = cli("sweep", str(daemon.config))
        assert again.stdout.startswith("no orphans at"), again.stdout
        assert daemon.alive
        print(
            f"\n{batch.name} sweep: drones before {len(drones)}, after"
            f" {len(drones & left)}; orphans found {len(orphans)}, left"
            f" {len(orphans & left)}; foreign jobs kept {len(foreign & left)}/{len(foreign)};"
            f" daemon alive {daemon.alive}"
        )
    finally:
        batch.remove(orphans | foreign)


@pytest.mark.parametrize(
    ("batch", "adapter", "section"),
    [
        pytest.param(SGE, "SGE", sge_site_section, id="sge"),
        pytest.param(SLURM, "SlurmBatch", slurm_site_section, id="slurm"),
    ],
)
def test_sweep_removes_only_this_sites_orphans(request, tmp_path, batch, adapter, section):
    request.getfixturevalue("sge" if adapter == "SGE" else "slurm")
    site = unique_site("osweep")
    config, demand = unified_config(
        tmp_path, site=site, adapter=adapter, site_section=section(tmp_path)
    )
    daemon = CobaldDaemon(config)
    try:
        sweep_scenario(batch, site, daemon, demand)
    finally:
        daemon.stop()
        batch.remove(set(batch.jobs(site)))
