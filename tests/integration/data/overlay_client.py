"""A physicist's session against the overlay pool, run by the tests as an ordinary user.

HTCondor refuses jobs owned by root, so the tests run this as the test account
``physicist``. It does what the user guide tells a physicist to do: an ``OverlayCluster``
with TLS from ``Security.temporary()``, ``scale(N)``, a ``dask.array`` computation, and
``close()``. Progress goes to stdout as one JSON object per line. Then it reads commands
on stdin, so the test can look at the pool while the workers are there and change it under
running work: ``slow SECONDS TASKS`` runs tasks that sleep, ``sum`` computes the sum again,
``grid SOURCE DESTINATION`` runs a task that reads SOURCE with gfal2 and writes a summary
to DESTINATION, ``close`` (or an empty line) ends the session.

With ``--events FILE`` (bench/bench_overlay.py) it also appends wall-clock timestamps to
FILE, one JSON object per line: ``scale`` just before ``cluster.scale(N)``, ``worker`` when
the scheduler registers each worker (a scheduler plugin, so the time is the scheduler's
own), ``workers`` when ``wait_for_workers`` returned. Without it nothing changes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import dask.array as da
from distributed import Client
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.security import Security

from tardis_sge_dask.dask import OverlayCluster


def say(event: str, **data: object) -> None:
    print(json.dumps({"event": event, **data}), flush=True)


def record(path: str | None, event: str, **data: object) -> None:
    """Append one timestamped event to the --events file (nothing without one)."""
    if path:
        with open(path, "a") as out:
            out.write(json.dumps({"event": event, "time": time.time(), **data}) + "\n")


class WorkerArrivals(SchedulerPlugin):
    """Records when the scheduler registers each worker (it runs in this process)."""

    name = "overlay-client-arrivals"

    def __init__(self, path: str):
        self.path = path

    def add_worker(self, scheduler: object, worker: str) -> None:
        state = scheduler.workers.get(worker)  # type: ignore[attr-defined]
        record(
            self.path, "worker", address=worker, name=str(state.name) if state is not None else None
        )


def slow_round(client: Client, seconds: float, tasks: int) -> None:
    """Tasks long enough for the test to take a drone away while they run."""

    def slow_square(index: int) -> tuple[int, str]:
        from distributed import get_worker

        time.sleep(seconds)
        return index * index, get_worker().name

    futures = client.map(slow_square, range(tasks), pure=False)
    deadline = time.monotonic() + 120
    while not any(client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    say("slow-started", processing={k: len(v) for k, v in client.processing().items()})
    results = client.gather(futures)
    say(
        "slow-result",
        squares=[value for value, _ in results],
        workers=sorted({worker for _, worker in results}),
    )


def grid_summary(source: str, destination: str) -> dict:
    """A physicist's task on grid data: read a file with gfal2, write a summary back.

    It runs on a worker job of a drone and authenticates with the drone's proxy, which the
    startd hands to its jobs as X509_USER_PROXY (docs/user-guide.md).
    """
    import hashlib
    import os

    from tardis_sge_dask import grid

    data = grid.read_bytes(source)
    summary = f"{len(data.split())} words, sha256 {hashlib.sha256(data).hexdigest()}\n"
    grid.write_bytes(destination, summary.encode())
    return {"proxy": grid.proxy(), "summary": summary, "cert_dir": os.environ.get("X509_CERT_DIR")}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--shared-temp-directory", required=True)
    parser.add_argument("--wait", type=float, default=600, help="seconds to wait for workers")
    parser.add_argument("--site", default=None)
    parser.add_argument("--pin-site", default=None, help="OverlayCluster(site=...)")
    parser.add_argument(
        "--events", default=None, help="append timestamped events to this file (benchmarks)"
    )
    args = parser.parse_args()

    # only this run's drones: a drone left over from another run must not take our jobs
    requirement = f'regexp("^{args.site}-", TARGET.TardisDroneUuid)'
    only_site = {"job_extra_directives": {"Requirements": requirement}} if args.site else {}
    pinned = {"site": args.pin_site} if args.pin_site else {}
    cluster = OverlayCluster(
        **only_site,
        **pinned,
        cores=1,
        memory="1GB",
        disk="1GB",
        security=Security.temporary(),
        shared_temp_directory=args.shared_temp_directory,
        # each worker leaves when its job is removed; nothing else keeps it
        death_timeout=60,
    )
    try:
        with Client(cluster) as client:
            if args.events:
                client.register_plugin(WorkerArrivals(args.events))
            started = time.monotonic()
            record(args.events, "scale", workers=args.workers)
            cluster.scale(args.workers)
            say("scaled", workers=args.workers, jobs=sorted(cluster.workers))
            client.wait_for_workers(args.workers, timeout=args.wait)
            record(args.events, "workers", workers=args.workers)
            workers = client.scheduler_info(n_workers=-1)["workers"]
            say(
                "workers",
                seconds=round(time.monotonic() - started, 1),
                names=sorted(str(info.get("name")) for info in workers.values()),
                hosts=sorted(info.get("host", "") for info in workers.values()),
            )
            # a function of this file: cloudpickle ships it as bytecode, which only a
            # worker of the client's own Python minor version can run
            array = da.arange(1_000_000, chunks=50_000)
            total = int((array * 2).sum().compute())
            versions = client.run(lambda: sys.version_info[:2])
            say("result", total=total, worker_pythons=sorted({tuple(v) for v in versions.values()}))
            # the test inspects the pool (status, schedd, drones) and may ask for more
            for line in sys.stdin:
                command = line.split()
                if not command or command[0] == "close":
                    break
                if command[0] == "slow":
                    slow_round(client, float(command[1]), int(command[2]))
                elif command[0] == "sum":
                    say("sum", total=int((da.arange(1_000_000, chunks=50_000) * 2).sum().compute()))
                elif command[0] == "grid":
                    say(
                        "grid",
                        **client.submit(grid_summary, command[1], command[2], pure=False).result(
                            timeout=300
                        ),
                    )
    finally:
        cluster.close()
        say("closed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
