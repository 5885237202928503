"""Machine time of the documented first hour on the local Grid Engine: init -> check -> a drone.

    .venv/bin/python bench/bench_init.py [--runs 3]

Each run, in a fresh directory, with a Dask scheduler of its own on 127.0.0.1:

1. ``tardis-sge-dask init site.yaml --batch-system sge --overlay dask`` (wall time);
2. the placeholders are filled by name (the scheduler's address, this venv's Python): the
   part a person does, not timed;
3. ``tardis-sge-dask check site.yaml`` (wall time; must report nothing);
4. the real ``python -m cobald.daemon`` on the file until the first drone is ``r`` in
   ``qstat`` (polled every 0.25 s). The demand comes from ``!StaticDemand`` (one drone of
   each machine type) in place of the Dask controller, which would wait for work at the
   scheduler: the same edit as tests/integration/test_init.py.
5. **reference**, in the same run: a raw ``qsub`` of a ``sleep`` job with the drone's
   queue, parallel environment and slots, until it is ``r``: what Grid Engine itself needs
   (its scheduler runs every few seconds, which dominates both numbers).

Every job is named ``benchinit…`` and removed at the end of its run. Must run under the
exclusive lock of the shared services (``flock /tmp/tsd-exclusive.lock ...``).
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from xml.etree import ElementTree

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from tardis_sge_dask.configfile import load  # noqa: E402
from tardis_sge_dask.init import placeholders  # noqa: E402

SCHEDULER_KEYS = {"address", "scheduler_address", "PILOT_DASK_SCHEDULER"}


def timed(argv: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=120)
    return time.monotonic() - start, done


def running(prefix: str) -> list[str]:
    out = subprocess.run(
        ["qstat", "-u", "*", "-s", "r", "-xml"], capture_output=True, text=True, check=True
    ).stdout
    return [
        entry.findtext("JB_job_number")
        for entry in ElementTree.fromstring(out).iter("job_list")
        if (entry.findtext("JB_name") or "").startswith(prefix) and entry.findtext("state") == "r"
    ]


def remove(prefix: str) -> None:
    out = subprocess.run(["qstat", "-u", "*", "-xml"], capture_output=True, text=True).stdout
    ids = [
        entry.findtext("JB_job_number")
        for entry in ElementTree.fromstring(out).iter("job_list")
        if (entry.findtext("JB_name") or "").startswith(prefix)
    ]
    if ids:
        subprocess.run(["qdel", *ids], capture_output=True)


def until_running(prefix: str, start: float, timeout: float = 120) -> float:
    while time.monotonic() - start < timeout:
        if running(prefix):
            return time.monotonic() - start
        time.sleep(0.25)
    raise SystemExit(f"no job {prefix}* running after {timeout} s")


def fill(path: Path, scheduler: str) -> None:
    text = path.read_text()
    for key_path, question in placeholders.find(load(path)):
        key = re.split(r"[.\[]", key_path)[-1]
        answer = scheduler if key in SCHEDULER_KEYS else sys.executable
        if key not in SCHEDULER_KEYS and key != "PILOT_PYTHON":
            raise SystemExit(f"init asks something this benchmark cannot answer: {key_path}")
        written = "'" + placeholders.placeholder(question).replace("'", "''") + "'"
        text = text.replace(written, answer, 1)
    path.write_text(text)


def static_demand(path: Path, demand: float) -> Path:
    text = path.read_text()
    start = text.index("  - !DaskDemandController")
    end = text.index("  - __type__: tardis_sge_dask.poolfactory.create_composite_pool")
    run = path.with_name("run.yaml")
    run.write_text(text[:start] + f"  - !StaticDemand {{demand: {demand}}}\n" + text[end:])
    return run


def one_run(directory: Path) -> dict[str, float]:
    site = f"benchinit{uuid.uuid4().hex[:6]}"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    scheduler = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dashboard-address",
            ":0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    daemon = None
    config = directory / "site.yaml"
    cli = [sys.executable, "-m", "tardis_sge_dask"]
    try:
        took = {}
        took["init"], done = timed(
            [
                *cli,
                "init",
                str(config),
                "--batch-system",
                "sge",
                "--overlay",
                "dask",
                "--site",
                site,
            ],
            directory,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        fill(config, f"tcp://127.0.0.1:{port}")
        took["check"], done = timed([*cli, "check", str(config)], directory)
        assert done.returncode == 0, done.stdout + done.stderr

        document = yaml.safe_load(re.sub(r"!\w+", "", config.read_text()))
        section = document["tardis"][site]
        types = section["MachineTypes"]
        demand = sum(section["MachineMetaData"][name]["Cores"] for name in types)
        run = static_demand(config, demand)
        start = time.monotonic()
        daemon = subprocess.Popen(
            [sys.executable, "-m", "cobald.daemon", str(run)],
            stdout=open(directory / "daemon.log", "w"),
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
        took["daemon -> first drone r"] = until_running(site, start)
        daemon.terminate()
        daemon.wait(30)
        remove(site)

        # the reference: the first machine type's shape, submitted by hand
        shape = section["MachineTypeConfiguration"][types[0]]
        cores = section["MachineMetaData"][types[0]]["Cores"]
        raw = f"{site}raw"
        argv = [
            "qsub",
            "-terse",
            "-N",
            raw,
            "-b",
            "y",
            "-o",
            "/dev/null",
            "-e",
            "/dev/null",
            "-q",
            shape["Queue"],
            "-l",
            f"h_rt={shape['Walltime']}",
        ]
        if shape.get("ParallelEnvironment"):
            argv += ["-pe", shape["ParallelEnvironment"], str(cores)]
        start = time.monotonic()
        subprocess.run([*argv, "sleep", "600"], check=True, capture_output=True)
        took["reference: raw qsub -> r"] = until_running(raw, start)
        return took
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.terminate()
            daemon.wait(30)
        remove(site)
        scheduler.terminate()
        scheduler.wait(30)
        for left in Path.home().glob(f"{site}-*.[oe][0-9]*"):
            left.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: list[dict[str, float]] = []
    for number in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-init-") as directory:
            results.append(one_run(Path(directory)))
        print(f"run {number + 1}: " + ", ".join(f"{k} {v:.1f} s" for k, v in results[-1].items()))
    for key in results[0]:
        values = [result[key] for result in results]
        print(
            f"{key:28s} median {statistics.median(values):5.1f} s  "
            f"(min {min(values):.1f}, max {max(values):.1f})"
        )
    machine = [r["init"] + r["check"] + r["daemon -> first drone r"] for r in results]
    print(f"{'init + check + first drone':28s} median {statistics.median(machine):5.1f} s")


if __name__ == "__main__":
    main()
