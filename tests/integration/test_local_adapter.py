"""``adapter: Local``: drones as real local processes running the real drone pilot."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from distributed import Scheduler
from tardis.exceptions.tardisexceptions import TardisQuotaExceeded
from tardis.interfaces.siteadapter import ResourceStatus
from tardis.utilities.attributedict import AttributeDict

from tardis_sge_dask.sites.local import LocalAdapter
from tardis_sge_dask.sites.processes import process_start, process_tree
from tests.helpers.tardis_config import configure

# a pilot that ignores the warning signal and leaves a grandchild in a session of its own,
# like a payload that hangs: only the kill after the grace may end it
STUBBORN_PILOT = """#!/bin/bash
trap 'echo "ignoring TERM"' TERM
setsid sleep 300 &
echo "stubborn drone $TardisDroneUuid"
while :; do sleep 0.2; done
"""


def local_adapter(tmp_path: Path, pilot: str | None = None, **site_keys) -> LocalAdapter:
    machine = {"JobEnvironment": site_keys.pop("JobEnvironment", {})}
    if pilot is not None:
        machine["StartupCommand"] = pilot
    section = {
        "StateDirectory": str(tmp_path / "state"),
        "MachineTypes": ["one"],
        "MachineMetaData": {"one": {"Cores": 1, "Memory": 1, "Disk": 1}},
        "MachineTypeConfiguration": {"one": machine},
        **site_keys,
    }
    configure("Local", section, site="Lcl")
    LocalAdapter._cores_in_use.clear()
    return LocalAdapter(machine_type="one", site_name="Lcl")


def drone(uuid: str, remote_id: str | None = None) -> AttributeDict:
    attributes = AttributeDict(
        drone_uuid=uuid,
        site_name="Lcl",
        machine_type="one",
        obs_machine_meta_data_translation_mapping=AttributeDict(
            Cores=1, Memory=1024, Disk=1024 * 1024
        ),
    )
    if remote_id is not None:
        attributes["remote_resource_uuid"] = remote_id
    return attributes


async def until(check, what: str, attempts: int = 600):
    for _ in range(attempts):
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


def all_gone(pids: set[int]) -> bool:
    return all((process_start(pid) or (0, "Z"))[1] == "Z" for pid in pids)


async def status_of(adapter: LocalAdapter, attributes: AttributeDict) -> ResourceStatus:
    result = await adapter.resource_status(attributes)
    attributes.update(result)
    return result.resource_status


async def test_a_drone_runs_the_pilot_and_retires_its_worker_on_stop(tmp_path):
    async with Scheduler(host="127.0.0.1", port=0, dashboard=False) as scheduler:
        adapter = local_adapter(
            tmp_path,
            StopGrace=60,
            JobEnvironment={"PILOT_DASK_SCHEDULER": scheduler.address, "PILOT_CHECK_DISK": "no"},
        )
        attributes = drone("lcl-aaaaaaaaaa")
        attributes.update(await adapter.deploy_resource(attributes))
        assert attributes.resource_status is ResourceStatus.Booting
        pid = int(attributes.remote_resource_uuid.split("-")[0])

        async def worker_joined():
            names = {worker.name for worker in scheduler.workers.values()}
            return "lcl-aaaaaaaaaa" in names

        await until(worker_joined, "the drone's worker joins the scheduler")
        assert await status_of(adapter, attributes) is ResourceStatus.Running
        tree = process_tree(pid)
        assert len(tree) >= 3  # pilot, nanny, worker

        await adapter.stop_resource(attributes)

        async def deleted():
            return await status_of(adapter, attributes) is ResourceStatus.Deleted

        await until(deleted, "the pilot exits after retiring its worker")
        assert not scheduler.workers
        await until(lambda: asyncio.sleep(0, all_gone(tree)), "the worker processes end")
        log = (tmp_path / "state" / "lcl-aaaaaaaaaa.log").read_text()
        assert "received SIGTERM" in log and "payload left after the drain" in log
        # nothing killed: the pilot left by itself well within its grace
        assert "killed" not in log
        assert not (tmp_path / "state" / "lcl-aaaaaaaaaa.json").exists()


async def test_a_restarted_daemon_finds_its_drone_and_terminate_kills_the_whole_tree(tmp_path):
    pilot = tmp_path / "stubborn.sh"
    pilot.write_text(STUBBORN_PILOT)
    adapter = local_adapter(tmp_path, str(pilot), TerminateGrace=1)
    attributes = drone("lcl-bbbbbbbbbb")
    attributes.update(await adapter.deploy_resource(attributes))
    remote_id = attributes.remote_resource_uuid
    pid = int(remote_id.split("-")[0])

    async def grandchild_started():
        return len(process_tree(pid)) >= 3  # bash, its loop's sleep, the setsid sleep

    await until(grandchild_started, "the stubborn pilot starts its grandchild")
    tree = process_tree(pid)

    # a new daemon: a new adapter, drones restored from the registry (with or without id)
    restarted = local_adapter(tmp_path, str(pilot), TerminateGrace=1)
    assert await status_of(restarted, drone("lcl-bbbbbbbbbb", remote_id)) is ResourceStatus.Running
    without_id = drone("lcl-bbbbbbbbbb")
    assert await status_of(restarted, without_id) is ResourceStatus.Running
    assert without_id.remote_resource_uuid == remote_id

    restored = drone("lcl-bbbbbbbbbb", remote_id)
    await restarted.terminate_resource(restored)

    async def gone():
        return await status_of(restarted, restored) is ResourceStatus.Deleted

    await until(gone, "the stubborn drone is killed after its grace")
    await until(
        lambda: asyncio.sleep(0, all_gone(tree)),
        "every process of the drone, in every session, is gone",
    )
    # the first adapter (our child's parent) reaps it
    assert await status_of(adapter, attributes) is ResourceStatus.Deleted


async def test_the_core_quota_bounds_the_live_drones(tmp_path):
    pilot = tmp_path / "sleepy.sh"
    pilot.write_text("#!/bin/bash\nexec sleep 300\n")
    adapter = local_adapter(tmp_path, str(pilot), MaxCores=1, TerminateGrace=0)
    first = drone("lcl-cccccccccc")
    first.update(await adapter.deploy_resource(first))
    with pytest.raises(TardisQuotaExceeded):
        await adapter.deploy_resource(drone("lcl-dddddddddd"))

    os.kill(int(first.remote_resource_uuid.split("-")[0]), 9)

    async def freed():
        return await status_of(adapter, first) is ResourceStatus.Deleted

    await until(freed, "the first drone is seen gone")
    second = drone("lcl-dddddddddd")
    second.update(await adapter.deploy_resource(second))
    await adapter.terminate_resource(second)

    async def second_gone():
        return await status_of(adapter, second) is ResourceStatus.Deleted

    await until(second_gone, "the second drone ends")


async def test_a_reused_pid_is_not_mistaken_for_the_drone(tmp_path):
    adapter = local_adapter(tmp_path)
    # this very process, but with another start time: the drone is gone
    attributes = drone("lcl-eeeeeeeeee", f"{os.getpid()}-1")
    assert await status_of(adapter, attributes) is ResourceStatus.Deleted
    await adapter.stop_resource(attributes)  # signals nothing
    assert await status_of(adapter, drone("lcl-ffffffffff")) is ResourceStatus.Deleted
