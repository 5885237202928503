"""From N waiting Dask workers to N drone submissions, against stock COBalD, in one run.

    .venv/bin/python bench/bench_controller.py [--n 100] [--interval 2]

Three measurements on the real Grid Engine, one after the other in the same run:

1. **raw**: a sequential loop of N ``qsub -terse -h`` with the very job script a drone
   gets: what the batch system itself needs to take N jobs.
2. **ours**: the real ``python -m cobald.daemon`` with ``!DaskDemandController`` reading
   ``!CondorQueueDemand`` above the package's pool factory (``ElasticFactoryPool``) and
   ``adapter: SGE``. ``condor_q`` is a stand-in on PATH that prints nothing until the
   clock starts and then N idle 1-core dask-jobqueue worker ads. Time: from writing those
   ads to the N-th "submitted as sge job" line of the daemon (the adapter logs it after
   qsub returned).
3. **stock**: the same daemon with COBalD's ``LinearController`` (its defaults: rate 1
   core/s, low_utilisation = high_allocation = 0.5) above TARDIS's stock ``FactoryPool``
   (fixed 30 s interval), same site. It does not read any demand, so its clock starts at
   its first step (the first demand change it logs) - a head start in its favour.

Drones are 1-core jobs submitted on hold (``-h``) into all.q, so nothing runs. Every job
is named ``bench…`` and removed at the end. Prints the times and the ratios to raw.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ElementTree
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from tardis_sge_dask.pilot import pilot_path  # noqa: E402
from tardis_sge_dask.sites.jobscript import render_job_script  # noqa: E402

SUBMITTED = re.compile(r"^(\S+ \S+) .*submitted as sge job (\d+)", re.M)
DEMAND_LINE = re.compile(r"^(\S+ \S+) INFO \S+ demand = ", re.M)
FAKE_CONDOR_Q = """#!/bin/bash
# condor_q stand-in: the idle worker ads once the benchmark has written them
cat "{ads}" 2>/dev/null
exit 0
"""
PILOT_ENV = {"PILOT_MODE": "dask", "PILOT_DASK_SCHEDULER": "tcp://127.0.0.1:1"}


def log_time(stamp: str) -> float:
    """Seconds since the epoch of a logging asctime (local time, milliseconds)."""
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def jobs_named(prefix: str) -> list[str]:
    out = subprocess.run(["qstat", "-xml"], capture_output=True, text=True, check=True).stdout
    return [
        entry.findtext("JB_job_number")
        for entry in ElementTree.fromstring(out).iter("job_list")
        if (entry.findtext("JB_name") or "").startswith(prefix)
    ]


def delete_jobs(prefix: str) -> None:
    for _ in range(10):
        ids = jobs_named(prefix)
        if not ids:
            return
        subprocess.run(["qdel", *ids], capture_output=True)
        time.sleep(2)


def raw_qsub_loop(n: int, prefix: str) -> float:
    script = render_job_script(pilot_path(), PILOT_ENV)
    start = time.perf_counter()
    for index in range(n):
        subprocess.run(
            [
                "qsub",
                "-terse",
                "-h",
                "-N",
                f"{prefix}-{index}",
                "-S",
                "/bin/bash",
                "-q",
                "all.q",
                "-v",
                f"TardisDroneUuid={prefix}-{index},TardisDroneCores=1",
            ],
            input=script,
            capture_output=True,
            text=True,
            check=True,
        )
    return time.perf_counter() - start


def worker_ads(n: int) -> str:
    """N idle dask-jobqueue worker job ads of 1 core / 1 GB, as ``condor_q -long`` prints."""
    return "".join(
        f"ClusterId = {1000 + index}\nProcId = 0\nJobStatus = 1\nIsDaskWorker = true\n"
        f"DaskWorkerCores = 1\nDaskWorkerMemory = 1000000000\n"
        f"RequestCpus = MY.DaskWorkerCores\n"
        f"RequestMemory = floor(MY.DaskWorkerMemory / 1048576)\n\n"
        for index in range(n)
    )


def config(directory: Path, site: str, n: int, pipeline: list, text_pipeline: str) -> Path:
    document = {
        "pipeline": pipeline,
        "logging": {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
            "handlers": {
                "console": {
                    "class": "logging.StreamHandler",
                    "stream": "ext://sys.stdout",
                    "formatter": "plain",
                }
            },
            "root": {"level": "INFO", "handlers": ["console"]},
        },
        "tardis": {
            "Plugins": {"SqliteRegistry": {"db_file": str(directory / "drones.db")}},
            "BatchSystem": {
                "adapter": "FakeBatchSystem",
                "allocation": 1.0,
                "utilisation": 1.0,
                "machine_status": "Available",
            },
            "Sites": [{"name": site, "adapter": "SGE", "quota": n, "drone_heartbeat_interval": 10}],
            site: {
                "executor": "__SHELL__",
                "JobEnvironment": PILOT_ENV,
                "MachineTypes": ["one"],
                "MachineMetaData": {"one": {"Cores": 1, "Memory": 2, "Disk": 1}},
                "MachineTypeConfiguration": {
                    "one": {
                        "StartupCommand": str(pilot_path()),
                        "Queue": "all.q",
                        "MemoryResource": None,
                        "ExtraOptions": ["-h"],
                    }
                },
            },
        },
    }
    text = yaml.safe_dump(document, sort_keys=False)
    text = text.replace("__SHELL__", "!TardisShellExecutor {}")
    text = text.replace("- __CONTROLLER__", text_pipeline)
    path = directory / "cobald.yaml"
    path.write_text(text)
    return path


class Daemon:
    def __init__(self, path: Path, env: dict[str, str]):
        self.log_path = path.with_suffix(".log")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cobald.daemon", str(path)],
            stdout=open(self.log_path, "w"),
            stderr=subprocess.STDOUT,
            cwd=path.parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), **env},
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, pattern: re.Pattern, count: int, timeout: float) -> list[tuple]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = pattern.findall(self.log())
            if len(found) >= count:
                return found
            if self.process.poll() is not None:
                raise SystemExit(f"daemon died:\n{self.log()[-3000:]}")
            time.sleep(0.2)
        raise SystemExit(
            f"timed out ({len(pattern.findall(self.log()))}/{count}):\n{self.log()[-3000:]}"
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def run_ours(n: int, interval: float, prefix: str, directory: Path) -> float:
    directory.mkdir()
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    ads = directory / "condor_q.out"
    fake = bin_dir / "condor_q"
    fake.write_text(FAKE_CONDOR_Q.format(ads=ads))
    fake.chmod(0o755)
    controller = (
        f"- !DaskDemandController {{interval: {interval}, idle_time: 600, "
        f"source: !CondorQueueDemand {{executor: !TardisShellExecutor {{}}}}}}"
    )
    path = config(
        directory,
        prefix,
        n,
        [
            "__CONTROLLER__",
            {"__type__": "tardis_sge_dask.poolfactory.create_composite_pool", "interval": interval},
        ],
        controller,
    )
    daemon = Daemon(path, {"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    try:
        # the controller is running once it has read the (still empty) source
        daemon.wait_for(re.compile(r"tardis_sge_dask.controller demand 0 cores"), 1, 120)
        start = time.time()
        ads.write_text(worker_ads(n))
        found = daemon.wait_for(SUBMITTED, n, 600)
        return max(log_time(stamp) for stamp, _ in found) - start
    finally:
        daemon.stop()


def stock_pool(configuration: str | None = None, interval: float = 30):
    """TARDIS's stock pool: COBalD's FactoryPool with its fixed interval (30 s), one per
    machine type under a WeightedComposite, on the drone factories the package's pool
    factory made (its own pools stay at demand 0)."""
    from cobald.composite.factory import FactoryPool
    from cobald.composite.weighted import WeightedComposite

    from tardis_sge_dask import poolfactory

    site_pool = poolfactory.create_composite_pool(configuration, interval=interval)
    return WeightedComposite(
        *[FactoryPool(factory=slot.pool.factory, interval=interval) for slot in site_pool.slots],
        weight="utilisation",
    )


def run_stock(n: int, prefix: str, directory: Path) -> float:
    directory.mkdir()
    path = config(
        directory,
        prefix,
        n,
        [
            {"__type__": "cobald.controller.linear.LinearController"},
            {"__type__": "bench.bench_controller.stock_pool"},
        ],
        "",
    )
    daemon = Daemon(path, {})
    try:
        [first, *_] = daemon.wait_for(DEMAND_LINE, 1, 120)
        found = daemon.wait_for(SUBMITTED, n, 900)
        return max(log_time(stamp) for stamp, _ in found) - log_time(first)
    finally:
        daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100, help="waiting workers (= drones)")
    parser.add_argument(
        "--interval", type=float, default=2, help="controller and pool interval of our pipeline (s)"
    )
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:6]
    work = Path(tempfile.mkdtemp(prefix="bench-controller-"))
    prefixes = {name: f"bench{name}{tag}" for name in ("raw", "ours", "stock")}
    try:
        raw = raw_qsub_loop(args.n, prefixes["raw"])
        delete_jobs(prefixes["raw"])
        ours = run_ours(args.n, args.interval, prefixes["ours"], work / "ours")
        delete_jobs(prefixes["ours"])
        stock = run_stock(args.n, prefixes["stock"], work / "stock")
    finally:
        for prefix in prefixes.values():
            delete_jobs(prefix)
    print(f"N = {args.n} waiting 1-core workers -> {args.n} held SGE drone jobs")
    print(f"  raw qsub loop (batch system alone)            {raw:7.1f} s")
    print(
        f"  DaskDemandController + ElasticFactoryPool     {ours:7.1f} s"
        f"  ratio to raw {ours / raw:5.2f}  overhead {ours - raw:+.1f} s"
        f" (goal: <= interval {args.interval:g} s + 2 s)"
    )
    print(
        f"  stock LinearController + FactoryPool (30 s)   {stock:7.1f} s"
        f"  ratio to raw {stock / raw:5.2f}  overhead {stock - raw:+.1f} s"
    )
    print(f"  stock / ours                                   {stock / ours:7.1f} x")
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")


if __name__ == "__main__":
    main()
