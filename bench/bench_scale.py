"""Thousands of queued drones in one real daemon on the real Grid Engine.

    flock /tmp/tsd-exclusive.lock .venv/bin/python bench/bench_scale.py --drones 1000 [--steady 120]

The real ``python -m cobald.daemon`` (run in-process by this script's ``--run-daemon``
mode, see below) drives one ``adapter: SGE`` site of 1-core drones with a ``!StaticDemand``
read from a file. The drones go to a queue made for the run (``qconf -Aq`` from
``qconf -sq all.q``) and disabled (``qmod -d``), so they stay queued: no test or other run
ever sees that queue or its jobs, which are removed at the end, also on failure.

Measured, beside the raw commands on the same jobs in the same run:

* time to submit all: demand 0 -> N until N ``qsub`` have returned, against a plain
  sequential ``qsub`` loop (its rate measured first, on a sample);
* listing calls per minute (``qstat -xml``) and every other command, counted by a shim
  on the daemon's ``PATH`` that logs each call and runs the real one;
* daemon CPU seconds per minute (``/proc/PID/stat``) and peak RSS (``VmHWM``) while
  nothing changes, against one raw ``qstat -xml`` of the same jobs (wall and CPU);
* the longest event-loop stall: a watchdog thread in the daemon's process posts a
  callback to the loop every 50 ms and records how late it runs (cobald is not changed:
  ``--run-daemon`` patches ``BaseEventLoop.run_forever`` to learn the loop, then runs
  ``cobald.daemon`` as ``python -m`` would). The log's cadence would only bound stalls
  by the heartbeat; the watchdog sees every stall longer than 50 ms;
* the registry: file size and rows;
* time to cancel all on demand 0: until ``qstat`` shows none of the run's jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers.sge_queue import (  # noqa: E402
    command_shims,
    delete_jobs,
    disabled_queue,
    jobs_named,
    logged_calls,
    run,
)

QUEUE_PREFIX = "tsdbench"


# ------------------------------------------------------------------ the daemon side
def run_daemon_with_watchdog(config: str, stall_file: str) -> None:
    """``python -m cobald.daemon CONFIG`` in this process, with a loop-stall watchdog."""
    import asyncio
    import runpy

    loops: list[asyncio.AbstractEventLoop] = []
    run_forever = asyncio.BaseEventLoop.run_forever

    def recording_run_forever(self):  # type: ignore[no-untyped-def]
        loops.append(self)
        return run_forever(self)

    asyncio.BaseEventLoop.run_forever = recording_run_forever  # type: ignore[method-assign]

    def watch() -> None:
        longest, pings, over_half = 0.0, 0, 0
        #: (wall-clock time, seconds late) of every stall over 0.1 s
        events: list[tuple[float, float]] = []
        last_write = 0.0
        while True:
            time.sleep(0.05)
            loop = loops[-1] if loops else None
            if loop is None or loop.is_closed():
                continue
            ran = threading.Event()
            posted = time.monotonic()
            try:
                loop.call_soon_threadsafe(ran.set)
            except RuntimeError:  # the loop closed meanwhile
                continue
            ran.wait()
            late = time.monotonic() - posted
            pings += 1
            longest = max(longest, late)
            over_half += late > 0.5
            if late > 0.1:
                events.append((time.time() - late, late))
            if time.monotonic() - last_write > 2:
                last_write = time.monotonic()
                Path(stall_file).write_text(
                    json.dumps(
                        {
                            "longest": longest,
                            "pings": pings,
                            "over_half": over_half,
                            "events": events,
                        }
                    )
                )

    threading.Thread(target=watch, daemon=True, name="stall-watchdog").start()
    sys.argv = ["cobald.daemon", config]
    runpy.run_module("cobald.daemon", run_name="__main__", alter_sys=True)


# ------------------------------------------------------------------ Grid Engine
def raw_qsub_rate(queue: str, prefix: str, sample: int) -> float:
    """Jobs per second of a plain sequential qsub loop, the way the daemon spells them."""
    ids = []
    started = time.perf_counter()
    try:
        for index in range(sample):
            out = run(
                "qsub", "-terse", "-N", f"{prefix}raw{index}", "-S", "/bin/bash", "-q", queue,
                "-l", "h_vmem=2048M", input="#!/bin/bash\nsleep 1\n",
            ).stdout  # fmt: skip
            ids.append(out.strip())
        return sample / (time.perf_counter() - started)
    finally:
        delete_jobs(ids)


def raw_listing() -> tuple[float, float, int]:
    """Wall and CPU seconds of one ``qstat -xml``, and its size in bytes."""
    before = os.times()
    started = time.perf_counter()
    out = run("qstat", "-xml").stdout
    wall = time.perf_counter() - started
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu, len(out)


# ------------------------------------------------------------------ measurements
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def registry(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as connection:
        (rows,) = connection.execute("SELECT COUNT(*) FROM Resources").fetchone()
    return db.stat().st_size, rows


def wait_for(condition, timeout: float, what: str, daemon: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        if daemon.poll() is not None:
            raise RuntimeError(f"the daemon died while waiting for {what}")
        time.sleep(2)  # each look is a qstat of every job: not more often
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def config_for(directory: Path, site: str, queue: str, drones: int, heartbeat: int, max_age):
    from tests.helpers.daemon import one_core_site, unified_config

    logs = directory / "logs"
    logs.mkdir()
    section = one_core_site({}, logs, {"Queue": queue, "Walltime": 3600})
    if max_age is not None:
        section["listing_max_age"] = max_age
    return unified_config(
        directory,
        site=site,
        adapter="SGE",
        site_section=section,
        quota=drones,
        heartbeat=heartbeat,
    )


def bench(options: argparse.Namespace, directory: Path) -> dict[str, float]:
    tag = uuid.uuid4().hex[:6]
    queue, site = f"{QUEUE_PREFIX}{tag}.q", f"{QUEUE_PREFIX}{tag}"
    command_log = directory / "commands.log"
    stall_file = directory / "stalls.json"
    result: dict[str, float] = {"drones": options.drones}
    daemon = None
    with disabled_queue(queue, directory, job_prefix=site):
        try:
            result["raw_qsub_rate"] = raw_qsub_rate(queue, site, options.raw_sample)
            config, demand = config_for(
                directory, site, queue, options.drones, options.heartbeat, options.max_age
            )
            env = {
                **os.environ,
                "PATH": f"{command_shims(directory, command_log)}:{os.environ['PATH']}",
                "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                "PYTHONUNBUFFERED": "1",
            }
            with open(directory / "daemon.log", "w") as log:
                daemon = subprocess.Popen(
                    [sys.executable, __file__, "--run-daemon", str(config), str(stall_file)],
                    stdout=log, stderr=subprocess.STDOUT, cwd=directory, env=env,
                )  # fmt: skip
            time.sleep(3)

            # submission: demand 0 -> N until N qsub have returned
            started = time.time()
            demand.write_text(str(options.drones))
            wait_for(
                lambda: len(jobs_named(site)) >= options.drones,
                options.drones / 2 + 300,
                f"{options.drones} jobs",
                daemon,
            )
            result["submit_seconds"] = time.time() - started
            submitted_at = time.time()

            # steady state: every drone past its first heartbeat, then a quiet stretch
            time.sleep(options.heartbeat + 5)
            steady_from, cpu_from = time.time(), cpu_seconds(daemon.pid)
            time.sleep(options.steady)
            steady_to, cpu_to = time.time(), cpu_seconds(daemon.pid)
            minutes = (steady_to - steady_from) / 60
            steady = logged_calls(command_log, steady_from, steady_to)
            result["listing_calls_per_min"] = steady.get("qstat -xml", 0) / minutes
            result["other_calls_per_min"] = (sum(steady.values()) - steady.get("qstat -xml", 0)) / (
                minutes
            )
            result["cpu_s_per_min"] = (cpu_to - cpu_from) / minutes
            result["peak_rss_mb"] = peak_rss_mb(daemon.pid)
            result["raw_listing_wall"], result["raw_listing_cpu"], result["listing_bytes"] = (
                raw_listing()
            )
            size, rows = registry(directory / "drones.db")
            result["registry_bytes"], result["registry_rows"] = size, rows
            events = json.loads(stall_file.read_text())["events"]
            result["longest_stall"] = max(
                (late for at, late in events if steady_from <= at < steady_to), default=0.0
            )
            result["longest_stall_submitting"] = max(
                (late for at, late in events if started <= at < submitted_at), default=0.0
            )

            # demand 0: until none of the run's jobs is left
            started = time.time()
            demand.write_text("0")
            wait_for(
                lambda: not jobs_named(site),
                options.drones / 2 + 600,
                "every job cancelled",
                daemon,
            )
            result["cancel_seconds"] = time.time() - started
            everything = logged_calls(command_log, submitted_at)
            result["qdel_calls"] = sum(n for c, n in everything.items() if c.startswith("qdel"))
            result["qstat_j_calls"] = everything.get("qstat -j", 0)
            result["qacct_calls"] = sum(n for c, n in everything.items() if c.startswith("qacct"))
            result["listing_calls_total"] = logged_calls(command_log).get("qstat -xml", 0)
            stalls = json.loads(stall_file.read_text())
            result["stall_longest_all"] = stalls["longest"]
            result["stalls_over_half_second"] = stalls["over_half"]
            result["longest_stall_cancelling"] = max(
                (late for at, late in stalls["events"] if at >= started), default=0.0
            )
            return result
        finally:
            if daemon is not None and daemon.poll() is None:
                daemon.terminate()
                try:
                    daemon.wait(60)
                except subprocess.TimeoutExpired:
                    daemon.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--drones", type=int, default=1000)
    parser.add_argument("--steady", type=float, default=120, help="seconds of quiet measured")
    parser.add_argument("--heartbeat", type=int, default=60, help="drone_heartbeat_interval")
    parser.add_argument("--max-age", type=float, default=None, help="listing_max_age (unset)")
    parser.add_argument("--raw-sample", type=int, default=100, help="raw qsub loop sample")
    parser.add_argument("--keep", help="keep the run's directory here (logs, registry)")
    parser.add_argument("--run-daemon", nargs=2, metavar=("CONFIG", "STALL_FILE"))
    options = parser.parse_args()
    if options.run_daemon:
        run_daemon_with_watchdog(*options.run_daemon)
        return

    print(f"# {' '.join(shlex.quote(arg) for arg in sys.argv)}")
    with tempfile.TemporaryDirectory(prefix="tsd-bench-scale-") as name:
        directory = Path(options.keep) if options.keep else Path(name)
        directory.mkdir(parents=True, exist_ok=True)
        r = bench(options, directory)
    n = int(r["drones"])
    raw_submit = n / r["raw_qsub_rate"]
    print(
        f"{n} drones: submitted in {r['submit_seconds']:.0f} s"
        f" ({n / r['submit_seconds']:.1f} jobs/s; a raw sequential qsub loop"
        f" {r['raw_qsub_rate']:.1f} jobs/s, {raw_submit:.0f} s for {n};"
        f" ratio {raw_submit / r['submit_seconds']:.2f})"
    )
    print(
        f"  steady: {r['listing_calls_per_min']:.1f} listing calls/min (goal: 1 per window),"
        f" {r['other_calls_per_min']:.1f} other commands/min;"
        f" daemon CPU {r['cpu_s_per_min']:.1f} s/min ({r['cpu_s_per_min'] / 60:.1%} of a core,"
        f" goal <= 10 %); peak RSS {r['peak_rss_mb']:.0f} MB"
    )
    print(
        f"  raw qstat -xml of the same jobs: {r['raw_listing_wall']:.2f} s wall,"
        f" {r['raw_listing_cpu']:.2f} s CPU, {r['listing_bytes'] / 1e6:.1f} MB"
    )
    print(
        f"  longest event-loop stall: {r['longest_stall']:.3f} s steady (goal <= 0.5 s),"
        f" {r['longest_stall_submitting']:.3f} s while submitting,"
        f" {r['longest_stall_cancelling']:.3f} s while cancelling,"
        f" {r['stall_longest_all']:.3f} s over the whole run including start-up;"
        f" {r['stalls_over_half_second']:.0f} stalls > 0.5 s in all"
    )
    print(f"  registry {r['registry_bytes'] / 1e6:.1f} MB, {r['registry_rows']:.0f} rows")
    print(
        f"  demand 0: all cancelled in {r['cancel_seconds']:.0f} s"
        f" ({r['qdel_calls']:.0f} qdel, {r['qstat_j_calls']:.0f} qstat -j,"
        f" {r['qacct_calls']:.0f} qacct); {r['listing_calls_total']:.0f} listing calls in all"
    )


if __name__ == "__main__":
    main()
