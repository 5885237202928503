"""A physicist's session against the overlay pool, run by the tests as an ordinary user.

HTCondor refuses jobs owned by root, so the tests run this as the test account
``physicist``. It does what the user guide tells a physicist to do: an ``OverlayCluster``
with TLS from ``Security.temporary()``, ``scale(N)``, a ``dask.array`` computation, and
``close()``. Progress goes to stdout as one JSON object per line; the test answers on
stdin when the session may end, so it can look at the pool while the workers are there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import dask.array as da
from distributed import Client
from distributed.security import Security

from tardis_sge_dask.dask import OverlayCluster


def say(event: str, **data: object) -> None:
    print(json.dumps({"event": event, **data}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--shared-temp-directory", required=True)
    parser.add_argument("--wait", type=float, default=600, help="seconds to wait for workers")
    parser.add_argument("--site", default=None)
    args = parser.parse_args()

    cluster = OverlayCluster(
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
            started = time.monotonic()
            cluster.scale(args.workers)
            say("scaled", workers=args.workers, jobs=sorted(cluster.workers))
            client.wait_for_workers(args.workers, timeout=args.wait)
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
            # the test inspects the pool (status, schedd, drones), then lets us go
            sys.stdin.readline()
    finally:
        cluster.close()
        say("closed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
