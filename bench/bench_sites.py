"""Site-adapter benchmark against the raw batch-system commands, measured in the same run.

    .venv/bin/python bench/bench_sites.py --system sge   [--submit 200] [--queued 1000]
    .venv/bin/python bench/bench_sites.py --system slurm

1. Submission: N drones through ``deploy_resource`` (concurrently, as TARDIS's drones do)
   against a plain sequential loop of the raw submit command with the very same argv and
   job script. Both submit held jobs so nothing starts.
2. Polling: with M queued (held) drones, one poll cycle = ``resource_status`` for every
   drone. Reports batch-system calls per cycle, wall time and the process's CPU time
   per cycle, against one raw listing command (``qstat -xml`` / ``squeue``).

Every job it creates is named ``bench-…`` and removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tardis.utilities.executors.shellexecutor import ShellExecutor  # noqa: E402

from tests.helpers.tardis_config import drone, make_adapter, site_section  # noqa: E402

SYSTEMS = {
    "sge": {
        "module": "tardis_sge_dask.sites.sge:SGEAdapter",
        "adapter": "SGE",
        "machine_type": {"Queue": "all.q", "ParallelEnvironment": "smp", "ExtraOptions": ["-h"]},
        "remove": ["qdel"],
    },
    "slurm": {
        "module": "tardis_sge_dask.sites.slurm:SlurmBatchAdapter",
        "adapter": "SlurmBatch",
        "machine_type": {"Partition": "debug", "ExtraOptions": ["--hold"]},
        "remove": ["scancel"],
    },
}


class CountingExecutor(ShellExecutor):
    """ShellExecutor that counts the commands it runs, by program."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, int] = {}

    async def run_command(self, command, stdin_input=None):
        program = command.split()[0]
        self.calls[program] = self.calls.get(program, 0) + 1
        return await super().run_command(command, stdin_input=stdin_input)


def load(reference: str) -> type:
    module, _, name = reference.partition(":")
    return getattr(__import__(module, fromlist=[name]), name)


def build_adapter(system: str, site: str, pilot: Path, executor: CountingExecutor):
    spec = SYSTEMS[system]
    section = site_section(str(pilot), Walltime=3600, **spec["machine_type"])
    section["executor"] = executor
    # every poll cycle takes a fresh listing, shared by the cycle's drones (the default
    # listing_max_age would answer later cycles from the first one's listing)
    section["listing_max_age"] = 0
    return make_adapter(load(spec["module"]), spec["adapter"], section, site=site)


def remove(system: str, job_ids: list[str]) -> None:
    for start in range(0, len(job_ids), 200):
        subprocess.run(
            [*SYSTEMS[system]["remove"], *job_ids[start : start + 200]], capture_output=True
        )


async def bench_submission(system: str, pilot: Path, count: int) -> dict[str, float]:
    site = f"bench{uuid.uuid4().hex[:6]}"
    executor = CountingExecutor()
    adapter = build_adapter(system, site, pilot, executor)
    adapter._adoptable = {}  # a fresh daemon would list once; keep both sides comparable
    drones = [drone(f"{site}-{index:010d}") for index in range(count)]
    submitted: list[str] = []
    try:
        # raw: the same argv and script, one after the other, as a shell loop would
        raw_ids = []
        started = time.perf_counter()
        for attributes in drones:
            argv, script = adapter.render_submission(attributes)
            result = subprocess.run(argv, input=script, capture_output=True, text=True, check=True)
            raw_ids.append(adapter.parse_job_id(result.stdout))
        raw_seconds = time.perf_counter() - started
        submitted += raw_ids

        started = time.perf_counter()
        results = await asyncio.gather(*(adapter.deploy_resource(d) for d in drones))
        adapter_seconds = time.perf_counter() - started
        submitted += [str(result.remote_resource_uuid) for result in results]
    finally:
        remove(system, submitted)
    return {
        "raw_rate": count / raw_seconds,
        "adapter_rate": count / adapter_seconds,
        "ratio": raw_seconds / adapter_seconds,
    }


async def bench_polling(system: str, pilot: Path, queued: int, cycles: int) -> dict[str, float]:
    site = f"bench{uuid.uuid4().hex[:6]}"
    executor = CountingExecutor()
    adapter = build_adapter(system, site, pilot, executor)
    drones = [drone(f"{site}-{index:010d}") for index in range(queued)]
    job_ids: list[str] = []
    try:
        for attributes in drones:
            argv, script = adapter.render_submission(attributes)
            result = subprocess.run(argv, input=script, capture_output=True, text=True, check=True)
            attributes["remote_resource_uuid"] = adapter.parse_job_id(result.stdout)
            job_ids.append(attributes["remote_resource_uuid"])

        listing = adapter.listing_command()
        raw_walls = []
        for _ in range(cycles):
            started = time.perf_counter()
            subprocess.run(listing, capture_output=True, check=True)
            raw_walls.append(time.perf_counter() - started)

        walls, cpus, calls = [], [], []
        for _ in range(cycles):
            before = sum(executor.calls.values())
            cpu_started, started = time.process_time(), time.perf_counter()
            statuses = await asyncio.gather(*(adapter.resource_status(d) for d in drones))
            walls.append(time.perf_counter() - started)
            cpus.append(time.process_time() - cpu_started)
            calls.append(sum(executor.calls.values()) - before)
            assert len(statuses) == queued
    finally:
        remove(system, job_ids)
    return {
        "calls_per_cycle": statistics.mean(calls),
        "wall_per_cycle": statistics.median(walls),
        "cpu_per_cycle": statistics.median(cpus),
        "raw_listing_wall": statistics.median(raw_walls),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--system", choices=sorted(SYSTEMS), default="sge")
    parser.add_argument("--submit", type=int, default=200, help="drones to submit")
    parser.add_argument("--queued", type=int, default=1000, help="queued drones to poll")
    parser.add_argument("--cycles", type=int, default=5, help="poll cycles to measure")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        pilot = Path(directory) / "pilot.sh"
        pilot.write_text("#!/bin/bash\nsleep 600\n")
        print(f"# {options.system}: {' '.join(shlex.quote(arg) for arg in sys.argv)}")
        submission = asyncio.run(bench_submission(options.system, pilot, options.submit))
        print(
            f"submission of {options.submit} drones: raw loop {submission['raw_rate']:.1f} jobs/s,"
            f" adapter {submission['adapter_rate']:.1f} jobs/s,"
            f" ratio adapter/raw {submission['ratio']:.2f} (goal >= 0.8)"
        )
        polling = asyncio.run(bench_polling(options.system, pilot, options.queued, options.cycles))
        print(
            f"polling {options.queued} queued drones: {polling['calls_per_cycle']:.1f}"
            f" batch-system call(s) per cycle (goal 1),"
            f" {polling['wall_per_cycle'] * 1000:.0f} ms wall and"
            f" {polling['cpu_per_cycle'] * 1000:.0f} ms daemon CPU per cycle;"
            f" raw listing alone {polling['raw_listing_wall'] * 1000:.0f} ms"
            f" (ratio {polling['wall_per_cycle'] / polling['raw_listing_wall']:.2f})"
        )


if __name__ == "__main__":
    main()
