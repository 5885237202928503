"""``tardis-sge-dask status``: drones from the real registry, workers from a real scheduler."""

from __future__ import annotations

import asyncio
import json

import yaml
from distributed import Scheduler, Worker

from tardis_sge_dask.cli import main
from tests.helpers.registry import register


def write_config(tmp_path, address: str):
    tardis = {
        "Plugins": {"SqliteRegistry": {"db_file": str(tmp_path / "drones.db")}},
        "BatchSystem": {"adapter": "Dask", "scheduler_address": address, "timeout": 5},
        "Sites": [{"name": "Stat", "adapter": "Local", "quota": 4}],
        "Stat": {
            "MachineTypes": ["one", "two"],
            "MachineMetaData": {
                "one": {"Cores": 1, "Memory": 1, "Disk": 1},
                "two": {"Cores": 2, "Memory": 2, "Disk": 1},
            },
        },
    }
    path = tmp_path / "cobald.yaml"
    path.write_text(yaml.safe_dump({"tardis": tardis}))
    return path, tardis


async def test_status_joins_the_registry_and_the_scheduler(tmp_path, capsys):
    async with Scheduler(host="127.0.0.1", port=0, dashboard=False) as scheduler:
        config, tardis = write_config(tmp_path, scheduler.address)
        await register(tardis)
        # where the pilot says the drone is (drone-pilot.sh)
        location = {"site:Stat": 1, "machine-type:one": 1}
        async with Worker(
            scheduler.address, nthreads=1, name="stat-1111111111", resources=location
        ) as worker:
            code = await asyncio.to_thread(main, ["status", str(config)])
            out = capsys.readouterr().out
            assert code == 0
            lines = out.splitlines()
            assert lines[0].split() == [
                "DRONE",
                "STATE",
                "JOB",
                "SITE",
                "MACHINE",
                "TYPE",
                "AGE",
                "WORKER/STARTD",
            ]
            first = next(line for line in lines if line.startswith("stat-1111111111"))
            assert first.split()[:6] == [
                "stat-1111111111",
                "Available",
                "4242-99",
                "Stat",
                "one",
                "5m",
            ]
            assert f"{worker.address} (running) at Stat/one" in first
            second = next(line for line in lines if line.startswith("stat-2222222222"))
            assert second.split()[1:2] == ["Booting"] and second.rstrip().endswith("-")
            assert lines[-1] == "2 drone(s): 1 Available, 1 Booting"

            assert await asyncio.to_thread(main, ["status", "--json", str(config)]) == 0
            rows = json.loads(capsys.readouterr().out)
            assert [row["drone_uuid"] for row in rows] == ["stat-1111111111", "stat-2222222222"]
            assert rows[0]["worker"].startswith(worker.address)


async def test_status_without_the_scheduler_still_lists_the_drones(tmp_path, capsys):
    async with Scheduler(host="127.0.0.1", port=0, dashboard=False) as scheduler:
        address = scheduler.address
    config, tardis = write_config(tmp_path, address)
    await register(tardis)
    assert await asyncio.to_thread(main, ["status", str(config)]) == 0
    captured = capsys.readouterr()
    assert "stat-1111111111" in captured.out and "2 drone(s)" in captured.out
    assert "note: overlay (Dask) not reachable" in captured.err


def test_status_names_a_missing_registry(tmp_path, capsys):
    config, _ = write_config(tmp_path, "tcp://127.0.0.1:1")
    assert main(["status", str(config)]) == 1
    assert f"drone registry {tmp_path / 'drones.db'} does not exist" in capsys.readouterr().err
