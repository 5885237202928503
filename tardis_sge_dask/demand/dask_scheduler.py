"""Direct mode: ask a Dask scheduler how many workers it wants for its queued work.

Each drone runs one ``dask worker`` with as many threads as the drone has cores, so the
scheduler's wish is turned into *waiting 1-core slots*: the threads it would like minus the
threads already connected. The controller packs those slots onto drones.

The scheduler is reached with distributed's plain RPC (``adaptive_target``, ``identity``,
``processing`` handlers): no ``Client`` is registered, so the COBalD daemon does not appear
as a user of the cluster and holds no futures.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from typing import Any

from cobald.daemon.plugins import yaml_tag

from ..scheduler_rpc import make_security, scheduler_state
from .packing import JobShape
from .sources import DemandSnapshot, DemandSource, DemandSourceError

logger = logging.getLogger("cobald.runtime.tardis_sge_dask.demand.dask_scheduler")


def wish_to_snapshot(state: dict[str, Any], memory_per_thread_gb: float = 0.0) -> DemandSnapshot:
    """Waiting 1-core slots = threads the scheduler wants - threads connected."""
    workers = [w for w in state["workers"].values() if w["status"] in ("running", "paused")]
    target = state["target"]
    threads = sum(w["nthreads"] for w in workers)
    if workers:
        per_worker = threads / len(workers)
        wanted_threads = math.ceil(target * per_worker)
    else:
        # with no worker, adaptive_target is already in threads (cores)
        wanted_threads = target
    waiting = max(0, wanted_threads - threads)
    busy = sum(1 for w in workers if w["processing"] > 0)
    shape = JobShape(cores=1.0, memory_gb=memory_per_thread_gb)
    return DemandSnapshot(
        waiting=Counter({shape: waiting}) if waiting else Counter(),
        running=busy,
        detail=f"scheduler wants {target} worker(s), has {len(workers)} ({threads} threads)",
    )


@yaml_tag(eager=True)
class DaskSchedulerDemand(DemandSource):
    """The workers a Dask scheduler asks for (``Scheduler.adaptive_target``).

    :param address: scheduler address, e.g. ``tcp://10.0.0.1:8786``
    :param security: optional TLS settings (``tls_ca_file``, ``tls_client_cert``,
        ``tls_client_key``, ``require_encryption``)
    :param memory_per_thread: GB each thread of a drone's worker should have (0: ignore)
    :param target_duration: how fast the queued work should finish (dask's
        ``distributed.adaptive.target-duration``, default "5s")
    :param timeout: seconds for connecting and answering
    """

    def __init__(
        self,
        address: str,
        security: dict[str, Any] | None = None,
        memory_per_thread: float = 0.0,
        target_duration: str | float | None = None,
        timeout: float = 10,
    ):
        self.address = address
        self.security = make_security(security)
        self.memory_per_thread = memory_per_thread
        self.target_duration = target_duration
        self.timeout = timeout

    async def poll(self) -> DemandSnapshot:
        try:
            state = await scheduler_state(
                self.address, self.security, self.timeout, self.target_duration
            )
        except (TimeoutError, OSError) as err:
            raise DemandSourceError(
                f"Dask scheduler {self.address} unreachable: {err or type(err).__name__}"
            ) from err
        return wish_to_snapshot(state, self.memory_per_thread)
