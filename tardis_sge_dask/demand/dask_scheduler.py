"""Direct mode: ask a Dask scheduler how many workers it wants for its queued work.

Each drone runs one ``dask worker`` with as many threads as the drone has cores, so the
scheduler's wish is turned into *waiting 1-core slots*: the threads it would like minus the
threads already connected. The controller packs those slots onto drones.

Tasks kept to a site (``resources={"site:PHYSnet": 1}``, which only that site's workers
offer) are counted per site by a small function run inside the scheduler
(:mod:`.scheduler_probe`, over its ``run_function`` handler): the ones no worker can run,
and those assigned to the site's workers beyond their threads. Their slots name the site;
the rest of the wish names none. A scheduler that refuses to run the function (an old
Dask, a plugin that forbids it) is logged once, and its wish then names no site.

The scheduler is reached with distributed's plain RPC (``adaptive_target``, ``identity``,
``processing`` handlers): no ``Client`` is registered, so the COBalD daemon does not appear
as a user of the cluster and holds no futures.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import cloudpickle
from cobald.daemon.plugins import yaml_tag
from distributed.protocol.pickle import dumps

from ..scheduler_rpc import make_security, scheduler_rpc, scheduler_state
from . import scheduler_probe
from .packing import JobShape
from .sources import DemandSnapshot, DemandSource, DemandSourceError

logger = logging.getLogger("cobald.runtime.tardis_sge_dask.demand.dask_scheduler")


# the scheduler has no copy of this package: the probe travels as code, not as a reference
cloudpickle.register_pickle_by_value(scheduler_probe)
_PROBE = dumps(scheduler_probe.site_tasks)

SITE_RESOURCE = "site:"


def wish_to_snapshot(
    state: dict[str, Any],
    memory_per_thread_gb: float = 0.0,
    site_tasks: Mapping[str, Sequence[int]] | None = None,
) -> DemandSnapshot:
    """Waiting 1-core slots = threads the scheduler wants - threads connected.

    ``site_tasks``: {site: (tasks no worker can run, tasks assigned to its workers)} of
    the tasks that ask for the site; each waiting one is a slot at that site.
    """
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
    slots: Counter[JobShape] = Counter()
    for site, (unrunnable, assigned) in sorted((site_tasks or {}).items()):
        threads_there = sum(
            w["nthreads"] for w in workers if f"{SITE_RESOURCE}{site}" in w.get("resources", {})
        )
        pinned = int(unrunnable) + max(0, int(assigned) - threads_there)
        if pinned > 0:
            slots[JobShape(cores=1.0, memory_gb=memory_per_thread_gb, site=site)] += pinned
    # the scheduler's wish counts the pinned tasks too
    waiting = max(0, waiting - sum(slots.values()))
    if waiting:
        slots[JobShape(cores=1.0, memory_gb=memory_per_thread_gb)] += waiting
    return DemandSnapshot(
        waiting=slots,
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
        self._probe_refused = False

    async def poll(self) -> DemandSnapshot:
        try:
            state = await scheduler_state(
                self.address, self.security, self.timeout, self.target_duration
            )
            site_tasks = await self.site_tasks()
        except (TimeoutError, OSError) as err:
            raise DemandSourceError(
                f"Dask scheduler {self.address} unreachable: {err or type(err).__name__}"
            ) from err
        return wish_to_snapshot(state, self.memory_per_thread, site_tasks)

    async def site_tasks(self) -> dict[str, Sequence[int]]:
        """Tasks asking for a site, per site, counted inside the scheduler."""
        async with scheduler_rpc(self.address, self.security, self.timeout) as remote:
            answer = await asyncio.wait_for(
                remote.run_function(function=_PROBE, wait=True), timeout=self.timeout
            )
        if not isinstance(answer, dict) or answer.get("status") != "OK":
            if not self._probe_refused:
                logger.warning(
                    "Dask scheduler %s did not count the tasks kept to a site (%s):"
                    " their demand goes to the preferred site",
                    self.address,
                    str((answer or {}).get("exception") or answer)[:200],
                )
            self._probe_refused = True
            return {}
        self._probe_refused = False
        return dict(answer.get("result") or {})
