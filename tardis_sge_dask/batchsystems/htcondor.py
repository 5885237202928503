"""TARDIS batch-system adapter ``adapter: HTCondorOverlay``: TARDIS's own HTCondor adapter
(condor_status to watch the drones, ``condor_drain -graceful`` to drain them) that does not
mistake a collector outage for drones that have gone.

TARDIS 0.9.0's adapter reports every drone it cannot find in the collector's answer as
NotAvailable, and an Available drone that is NotAvailable is shut down. That happens

* when the daemon starts while the collector is down: there is no cached answer, so every
  drone restored from the registry is "gone";
* after a collector restart, until each startd has advertised itself again (its update
  interval, 5 minutes by default): TARDIS decides whether to trust its cached answer by
  the *master's* start time, which a restart of the collector alone does not change.

* right after a collector restart, before the central manager's master has advertised
  itself again: TARDIS 0.9.0 then fails with ``min() arg is an empty sequence``, and as
  that is no TARDIS exception it stops the whole daemon.

All of these would drain or kill working drones, or the daemon. This adapter keeps a
drone's last known status for ``missing_grace`` seconds after it disappeared from the
collector's answer (or the answer could not be used), and while the collector has never
answered it holds a drone's status check until it does, instead of shutting the drone
down. A status check may not raise here: TARDIS does not catch exceptions of the batch
system's status calls, and any exception ends the daemon.

Config (``BatchSystem`` section): every key of TARDIS's ``HTCondor`` adapter, plus::

    BatchSystem:
      adapter: HTCondorOverlay
      missing_grace: 600    # seconds a vanished startd keeps its last status (default 600)
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
from collections.abc import Iterable

from tardis.adapters.batchsystems.htcondor import HTCondorAdapter
from tardis.configuration.configuration import Configuration
from tardis.exceptions.executorexceptions import CommandExecutionFailure
from tardis.interfaces.batchsystemadapter import MachineStatus
from tardis.utilities.executors.shellexecutor import ShellExecutor

logger = logging.getLogger("cobald.runtime.tardis_sge_dask.batchsystems.htcondor")

#: seconds a drone's startd may be missing from the collector before it counts as gone;
#: twice HTCondor's default UPDATE_INTERVAL, so every startd has re-advertised by then
DEFAULT_MISSING_GRACE = 600.0
#: seconds between two checks of a collector that has never answered
PROBE_RETRY = 10.0


class HTCondorOverlayAdapter(HTCondorAdapter):
    """TARDIS's HTCondor adapter that survives collector outages and restarts."""

    def __init__(self) -> None:
        super().__init__()
        config = Configuration().BatchSystem
        self.missing_grace = float(getattr(config, "missing_grace", DEFAULT_MISSING_GRACE))
        self._probe_executor = getattr(config, "executor", None) or ShellExecutor()
        self._pool = (getattr(config, "options", None) or {}).get("pool")
        #: drone uuid -> (last status seen in the collector, its ratios, monotonic time)
        self._last_seen: dict[str, tuple[MachineStatus, list[float], float]] = {}
        self._collector_answered = False

    async def get_machine_status(self, drone_uuid: str) -> MachineStatus:
        try:
            status = await super().get_machine_status(drone_uuid)
        except ValueError as err:
            # TARDIS's updater fails on a collector answer without the masters' ads
            logger.warning("drone %s: unusable collector answer (%s)", drone_uuid, err)
            status = MachineStatus.NotAvailable
            self._collector_answered = True
        now = time.monotonic()
        if status is not MachineStatus.NotAvailable:
            self._collector_answered = True
            ratios = list(await super().get_resource_ratios(drone_uuid))
            self._last_seen[drone_uuid] = (status, ratios, now)
            return status
        known = self._last_seen.get(drone_uuid)
        if known is None:
            if not self._collector_answered:
                await self._require_collector(drone_uuid)
                return await self.get_machine_status(drone_uuid)
            return status
        last_status, _, seen_at = known
        missing = now - seen_at
        if missing < self.missing_grace:
            logger.info(
                "drone %s: its startd is missing from the collector for %.0f s; keeping its"
                " last status %s for up to %.0f s (collector outage or restart?)",
                drone_uuid,
                missing,
                last_status.name,
                self.missing_grace,
            )
            return last_status
        del self._last_seen[drone_uuid]
        logger.warning(
            "drone %s: its startd has been missing from the collector for %.0f s: NotAvailable",
            drone_uuid,
            missing,
        )
        return status

    async def get_resource_ratios(self, drone_uuid: str) -> Iterable[float]:
        try:
            ratios = list(await super().get_resource_ratios(drone_uuid))
        except ValueError:
            ratios = []
        if ratios:
            return ratios
        known = self._last_seen.get(drone_uuid)
        if known is not None and time.monotonic() - known[2] < self.missing_grace:
            # an unreachable collector does not make a busy drone idle
            return known[1]
        return ratios

    async def drain_machine(self, drone_uuid: str) -> None:
        try:
            await super().drain_machine(drone_uuid)
        except ValueError as err:
            # TARDIS checks again: a drone still Available in DrainingState is drained anew
            logger.warning(
                "drone %s: not drained yet, unusable collector answer (%s)", drone_uuid, err
            )

    async def _require_collector(self, drone_uuid: str) -> None:
        """Return once the collector answers; until then this drone's status waits."""
        argv = ["condor_status", "-collector", "-af", "Name"]
        if self._pool:
            argv[1:1] = ["-pool", str(self._pool)]
        while not self._collector_answered:
            try:
                answer = await self._probe_executor.run_command(shlex.join(argv))
            except CommandExecutionFailure as err:
                logger.warning(
                    "drone %s: the overlay collector does not answer (%s); its status is"
                    " checked again in %.0f s",
                    drone_uuid,
                    " ".join(str(err.stderr or err).split())[:200],
                    PROBE_RETRY,
                )
                await asyncio.sleep(PROBE_RETRY)
            else:
                self._collector_answered = bool(answer.stdout.strip())
                if not self._collector_answered:
                    await asyncio.sleep(PROBE_RETRY)
