"""The drone registry when the batch system hands one job id to two drones.

Driven exactly as TARDIS drives it: ``notify`` on each state change of a drone, with the
drone's resource attributes; the rows read back as ``status`` reads them.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from tardis.plugins.sqliteregistry import SqliteRegistry as TardisSqliteRegistry
from tardis.resources.dronestates import (
    AvailableState,
    BootingState,
    CleanupState,
    DownState,
    RequestState,
)
from tardis.resources.poolfactory import get_drones_to_restore
from tardis.utilities.attributedict import AttributeDict

from tardis_sge_dask import registry_plugin
from tardis_sge_dask.configfile import install_tardis_configuration
from tardis_sge_dask.registry_plugin import SqliteRegistry, load_plugins
from tardis_sge_dask.sites.settings import SiteConfigError
from tardis_sge_dask.status import read_registry

SITE = "Reuse"


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    db_file = tmp_path / "drones.db"
    install_tardis_configuration(
        {
            "Plugins": {"SqliteRegistry": {"db_file": str(db_file)}},
            "Sites": [{"name": SITE, "adapter": "SlurmBatch", "quota": 4}],
            SITE: {"MachineTypes": ["small"]},
        }
    )
    return db_file


def attributes(uuid: str, created: datetime, job_id: str | None = None) -> AttributeDict:
    return AttributeDict(
        drone_uuid=uuid,
        site_name=SITE,
        machine_type="small",
        remote_resource_uuid=job_id,
        created=created,
        updated=created,
    )


async def submitted(registry, uuid: str, created: datetime, job_id: str) -> AttributeDict:
    """A drone's first two state changes: requested, then booting as ``job_id``."""
    drone = attributes(uuid, created)
    await registry.notify(RequestState(), drone)
    drone.remote_resource_uuid = job_id
    await registry.notify(BootingState(), drone)
    return drone


def job_ids(db_file: Path) -> dict[str, str]:
    return {row.drone_uuid: row.job_id for row in read_registry(db_file)}


async def test_tardis_own_registry_stops_at_a_reused_job_id(db_file):
    # the failure this module exists for: an exception out of a drone state kills the daemon
    registry = TardisSqliteRegistry()
    now = datetime.now()
    await submitted(registry, "reuse-old", now - timedelta(minutes=5), "150")
    with pytest.raises(sqlite3.IntegrityError):
        await submitted(registry, "reuse-new", now, "150")


async def test_a_reused_job_id_goes_to_the_newer_drone(db_file, caplog):
    registry = SqliteRegistry()
    now = datetime.now()
    old = await submitted(registry, "reuse-old", now - timedelta(minutes=5), "150")
    await submitted(registry, "reuse-other", now - timedelta(minutes=4), "151")
    await submitted(registry, "reuse-new", now, "150")
    assert job_ids(db_file) == {"reuse-old": "", "reuse-other": "151", "reuse-new": "150"}
    (warning,) = [r.getMessage() for r in caplog.records if "handed out twice" in r.getMessage()]
    assert str(db_file) in warning and "job id 150" in warning
    assert "drone reuse-old's job is gone" in warning

    # the lost drone still believes in job 150 and records its next states with it
    await registry.notify(CleanupState(), old)
    assert job_ids(db_file) == {"reuse-old": "", "reuse-other": "151", "reuse-new": "150"}
    states = {row.drone_uuid: row.state for row in read_registry(db_file)}
    assert states["reuse-old"] == "Cleanup"
    await registry.notify(DownState(), old)
    assert job_ids(db_file) == {"reuse-other": "151", "reuse-new": "150"}


async def test_a_restart_gets_the_lost_drone_without_a_job_id(db_file):
    registry = SqliteRegistry()
    now = datetime.now()
    await submitted(registry, "reuse-old", now - timedelta(minutes=5), "150")
    new = await submitted(registry, "reuse-new", now, "150")
    await registry.notify(AvailableState(), new)

    plugins = load_plugins()
    assert isinstance(plugins["SqliteRegistry"], SqliteRegistry)
    site = AttributeDict(name=SITE)
    restored = {
        drone["drone_uuid"]: drone for drone in get_drones_to_restore(plugins, site, "small")
    }
    # no job id: the adapter looks the drone up by its job's name and finds it gone
    assert restored["reuse-old"]["remote_resource_uuid"] is None
    assert restored["reuse-new"]["remote_resource_uuid"] == "150"
    assert type(restored["reuse-new"]["state"]) is AvailableState


async def test_writes_the_file_refuses_are_kept_until_it_takes_them(db_file, caplog, monkeypatch):
    monkeypatch.setattr(registry_plugin, "RETRY_SECONDS", 0.01)
    registry = SqliteRegistry()
    now = datetime.now()
    first = await submitted(registry, "ro-first", now - timedelta(minutes=2), "160")
    tardis_connect = registry.connect

    @contextmanager
    def refused():
        # what sqlite3 says when the file's directory has become read-only
        raise sqlite3.OperationalError("unable to open database file")
        yield

    registry.connect = refused
    await registry.notify(AvailableState(), first)
    await submitted(registry, "ro-second", now, "161")
    short = await submitted(registry, "ro-short", now, "162")
    await registry.notify(DownState(), short)
    assert job_ids(db_file) == {"ro-first": "160"}  # nothing of the above reached the file
    (error,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert f"drone registry {db_file} cannot be written" in error.getMessage()
    assert "unable to open database file" in error.getMessage()

    registry.connect = tardis_connect
    # no drone changes its state: the registry retries by itself
    for _ in range(1000):
        if any("written again" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.01)
    rows = {row.drone_uuid: (row.job_id, row.state) for row in read_registry(db_file)}
    assert rows == {"ro-first": ("160", "Available"), "ro-second": ("161", "Booting")}
    assert any("written again: no drone state lost" in r.getMessage() for r in caplog.records)


def test_a_registry_that_cannot_be_opened_at_start_is_one_line(db_file):
    install_tardis_configuration(
        {
            "Plugins": {"SqliteRegistry": {"db_file": str(db_file.parent / "no" / "drones.db")}},
            "Sites": [{"name": SITE, "adapter": "SlurmBatch", "quota": 4}],
            SITE: {"MachineTypes": ["small"]},
        }
    )
    with pytest.raises(SiteConfigError, match=r"Plugins.SqliteRegistry.db_file: cannot open"):
        load_plugins()
