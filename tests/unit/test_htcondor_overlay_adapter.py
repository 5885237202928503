"""``adapter: HTCondorOverlay``: a collector outage or restart does not make drones "gone".

The executor answers like the real pool (the three condor_status calls of TARDIS 0.9.0's
HTCondor adapter: the collectors, the masters' start times, the partitionable slots);
the collector can be "down" (condor_status fails) or "restarted" (a fresh answer without
the drone's startd, which has not re-advertised yet). The collector host's master has been
up for days, so TARDIS does not trust its cache after the restart.
"""

from __future__ import annotations

import logging
import time

import pytest
from tardis.configuration.configuration import Configuration
from tardis.exceptions.executorexceptions import CommandExecutionFailure
from tardis.interfaces.batchsystemadapter import MachineStatus
from tardis.utilities.attributedict import AttributeDict

from tardis_sge_dask.batchsystems import htcondor as module
from tardis_sge_dask.batchsystems.htcondor import HTCondorOverlayAdapter
from tardis_sge_dask.poolfactory import batch_system_adapter_class

DRONE = "physnet-sge-0a1b2c3d4e"
MASTER_STARTED = int(time.time()) - 3 * 86400


class Pool:
    """condor_status as the overlay's collector answers it."""

    def __init__(self) -> None:
        self.up = True
        self.masters = True
        self.startds: dict[str, str] = {DRONE: "Unclaimed\tIdle\t0.5\t0.25"}
        self.commands: list[str] = []

    async def run_command(self, command: str, stdin_input: str | None = None):
        self.commands.append(command)
        if not self.up:
            raise CommandExecutionFailure(
                message="condor_status failed",
                exit_code=1,
                stdout="",
                stderr="Error: communication error\nCEDAR:6001:Failed to connect to <cm:9618>",
            )
        if "-master" in command:
            stdout = f"cm.example\t{MASTER_STARTED}\n" if self.masters else ""
        elif "-collector" in command:
            stdout = "cm.example\n"
        else:
            # Machine Name State Activity TardisDroneUuid cpu_ratio memory_ratio
            stdout = "".join(
                "\t".join(
                    [
                        f"{uuid}.node",
                        f"slot1@{uuid}@node",
                        *rest.split("\t")[:2],
                        uuid,
                        *rest.split("\t")[2:],
                    ]
                )
                + "\n"
                for uuid, rest in self.startds.items()
            )
        return AttributeDict(stdout=stdout, stderr="", exit_code=0)


@pytest.fixture
def pool(monkeypatch):
    pool = Pool()
    Configuration()._shared_state.clear()
    Configuration().update_config(
        {
            "BatchSystem": {
                "adapter": "HTCondorOverlay",
                "max_age": 0,
                "ratios": {
                    "cpu_ratio": "Real(TotalSlotCpus-Cpus)/TotalSlotCpus",
                    "memory_ratio": "Real(TotalSlotMemory-Memory)/TotalSlotMemory",
                },
                "executor": pool,
                "missing_grace": 300,
            },
            "Sites": [],
        }
    )
    now = [1000.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: now[0])
    pool.clock = now
    return pool


def test_the_configured_name_builds_this_adapter(pool):
    assert batch_system_adapter_class("HTCondorOverlay") is HTCondorOverlayAdapter


async def test_a_collector_outage_and_restart_keep_a_working_drone(pool, caplog):
    caplog.set_level(logging.INFO)
    adapter = HTCondorOverlayAdapter()
    assert await adapter.get_machine_status(DRONE) is MachineStatus.Available
    assert await adapter.get_allocation(DRONE) == 0.5

    pool.up = False  # collector stopped
    pool.clock[0] += 30
    assert await adapter.get_machine_status(DRONE) is MachineStatus.Available

    pool.up, pool.startds = True, {}  # restarted: the startd has not re-advertised yet
    pool.clock[0] += 30
    assert await adapter.get_machine_status(DRONE) is MachineStatus.Available
    # a busy drone does not look idle meanwhile (the controller would drain it)
    assert await adapter.get_allocation(DRONE) == 0.5
    assert "missing from the collector" in caplog.text

    # advertised again (a partitionable slot stays Unclaimed while its dynamic slots work)
    pool.startds = {DRONE: "Unclaimed\tIdle\t1.0\t0.5"}
    pool.clock[0] += 60
    assert await adapter.get_machine_status(DRONE) is MachineStatus.Available
    assert await adapter.get_allocation(DRONE) == 1.0


async def test_a_startd_gone_for_longer_than_the_grace_is_gone(pool, caplog):
    adapter = HTCondorOverlayAdapter()
    assert await adapter.get_machine_status(DRONE) is MachineStatus.Available
    pool.startds = {}
    pool.clock[0] += 301
    assert await adapter.get_machine_status(DRONE) is MachineStatus.NotAvailable
    assert "NotAvailable" in caplog.text
    assert await adapter.get_allocation(DRONE) == 0.0


async def test_a_daemon_started_during_an_outage_waits_instead_of_shutting_down(pool, monkeypatch):
    pool.up = False
    waits = []

    async def sleep(seconds):
        # the collector comes back while the drone's status check waits
        waits.append(seconds)
        pool.up = True

    monkeypatch.setattr(module.asyncio, "sleep", sleep)
    adapter = HTCondorOverlayAdapter()
    # restored from the registry as Available: "gone" would shut it down; the check waits
    # for the collector instead (raising would end the daemon: TARDIS catches nothing here)
    assert await adapter.get_machine_status(DRONE) is MachineStatus.Available
    assert waits


async def test_a_collector_without_its_masters_ad_does_not_end_the_daemon(pool):
    adapter = HTCondorOverlayAdapter()
    assert await adapter.get_machine_status(DRONE) is MachineStatus.Available
    pool.masters = False  # restarted collector; the masters have not advertised yet
    pool.clock[0] += 10
    assert await adapter.get_machine_status(DRONE) is MachineStatus.Available
    assert await adapter.get_allocation(DRONE) == 0.5
    await adapter.drain_machine(DRONE)  # logged, retried by TARDIS later


async def test_a_drone_not_yet_in_an_answering_collector_is_not_available(pool):
    pool.startds = {}
    adapter = HTCondorOverlayAdapter()
    assert await adapter.get_machine_status(DRONE) is MachineStatus.NotAvailable
    assert any("condor_status -collector" in command for command in pool.commands)
