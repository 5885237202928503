"""Drones recorded by TARDIS's own SqliteRegistry, as the daemon records them."""

from __future__ import annotations

from datetime import datetime, timedelta

from tardis.plugins.sqliteregistry import SqliteRegistry
from tardis.resources.dronestates import AvailableState, BootingState
from tardis.utilities.attributedict import AttributeDict

from tardis_sge_dask.configfile import install_tardis_configuration


async def register(
    tardis: dict,
    site: str = "Stat",
    drones: tuple[tuple[str, str], ...] = (("stat-1111111111", "one"), ("stat-2222222222", "two")),
) -> None:
    """The first drone Available as batch job 4242-99 for 5 minutes, the second just Booting."""
    install_tardis_configuration(tardis)
    registry = SqliteRegistry()
    now = datetime.now()
    (first, first_type), (second, second_type) = drones
    for uuid, machine_type, job, state, created in (
        (first, first_type, "4242-99", AvailableState(), now - timedelta(minutes=5)),
        (second, second_type, None, BootingState(), now - timedelta(seconds=3)),
    ):
        attributes = AttributeDict(
            drone_uuid=uuid,
            site_name=site,
            machine_type=machine_type,
            remote_resource_uuid=job,
            created=created,
            updated=created,
        )
        await registry.insert_resource({"state": str(BootingState()), **attributes})
        await registry.notify(state, attributes)
