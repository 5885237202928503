"""TARDIS's SqliteRegistry, surviving a batch job id the batch system hands out twice.

A Grid Engine qmaster or a slurmctld killed uncleanly forgets the jobs it accepted last
and gives their ids to the next submissions (measured on SLURM 22.05: a drone's job 150
lost, the next submission got 150). TARDIS 0.9.0's registry holds one row per drone with
``UNIQUE (site_id, remote_resource_uuid)``: recording the new drone's job id while the
lost drone's row still holds it raises ``sqlite3.IntegrityError`` out of a drone state,
and that stops the whole daemon.

Two drones of one site holding one id means the batch system reused it, so the older
submission's job is gone for good: the newer drone keeps the id, the older row's id is
cleared (NULL, as for a drone whose submission was never recorded), in the same
transaction as the write. The site adapter tells the lost drone the same thing from the
job's name (``BatchSiteAdapter._taken_by_another``); a cleared row restored after a
restart is looked up by its name and found gone. The schema and the file are TARDIS's,
so ``status``, ``sweep`` and older daemons read it unchanged.

TARDIS loads plugins by module name (``tardis.plugins.<name>``) with no hook for another
package, and restores drones from the plugin registered as ``SqliteRegistry``; so the
configuration keeps ``Plugins: SqliteRegistry: {db_file: ...}`` and the package's pool
factory loads this class under that name (:func:`load_plugins`).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import warnings
from datetime import datetime
from importlib import import_module
from typing import Any

from tardis.configuration.configuration import Configuration
from tardis.interfaces.plugin import Plugin
from tardis.plugins.sqliteregistry import SqliteRegistry as TardisSqliteRegistry

logger = logging.getLogger("cobald.runtime.tardis_sge_dask.registry")

# the same datetime-adapter deprecation (Python 3.12+) the package silences for TARDIS's
# module (tardis_sge_dask/__init__.py): this module runs TARDIS's statements
warnings.filterwarnings(
    "ignore",
    message=r"The default (date|datetime) adapter is deprecated|"
    r"The default (date|timestamp) converter is deprecated",
    category=DeprecationWarning,
    module=r"tardis_sge_dask\.registry_plugin",
)

_HOLDERS = """
SELECT R.drone_uuid, CAST(R.created AS TEXT) AS created
FROM Resources R JOIN Sites S ON R.site_id = S.site_id
WHERE S.site_name = :site_name AND R.remote_resource_uuid = :job_id
AND R.drone_uuid != :drone_uuid
"""
_CLEAR = "UPDATE Resources SET remote_resource_uuid = NULL WHERE drone_uuid = :drone_uuid"


class _RecordingJobId(dict):
    """Bind parameters of a write that records a drone's job id (see async_execute)."""


class SqliteRegistry(TardisSqliteRegistry):
    """TARDIS's registry; a job id reused by the batch system goes to the newer drone."""

    async def insert_resource(self, bind_parameters: dict) -> None:
        await super().insert_resource(_RecordingJobId(bind_parameters))

    async def update_resource(self, bind_parameters: dict) -> None:
        await super().update_resource(_RecordingJobId(bind_parameters))

    async def async_execute(self, sql_query: str, bind_parameters: dict) -> list[dict]:
        if not isinstance(bind_parameters, _RecordingJobId):
            return await super().async_execute(sql_query, bind_parameters)
        # TARDIS's own statement, run after making room for the id in one transaction
        # (the registry's single-thread executor keeps every write in order)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.thread_pool_executor, self._record_job_id, sql_query, dict(bind_parameters)
        )

    def _record_job_id(self, sql_query: str, bind_parameters: dict) -> list[dict]:
        with self.connect() as connection:
            job_id = bind_parameters.get("remote_resource_uuid")
            if job_id is not None:
                bind_parameters = self._make_room(connection, bind_parameters, str(job_id))
            connection.row_factory = lambda cur, row: {
                col[0]: row[idx] for idx, col in enumerate(cur.description)
            }
            return connection.execute(sql_query, bind_parameters).fetchall()

    def _make_room(
        self, connection: sqlite3.Connection, bind_parameters: dict, job_id: str
    ) -> dict:
        drone_uuid = bind_parameters.get("drone_uuid")
        holders = connection.execute(
            _HOLDERS,
            {
                "site_name": bind_parameters.get("site_name"),
                "job_id": job_id,
                "drone_uuid": drone_uuid,
            },
        ).fetchall()
        for holder, holder_created in holders:
            if _newer(bind_parameters.get("created"), holder_created):
                connection.execute(_CLEAR, {"drone_uuid": holder})
                stale = holder
            else:
                bind_parameters = {**bind_parameters, "remote_resource_uuid": None}
                stale = drone_uuid
            logger.warning(
                "registry %s: drones %s and %s of site %s both hold job id %s, which the"
                " batch system handed out twice; it stays with the newer one, drone %s's"
                " job is gone",
                self._db_file,
                drone_uuid,
                holder,
                bind_parameters.get("site_name"),
                job_id,
                stale,
            )
        return bind_parameters


def _newer(created: Any, other_created: str | None) -> bool:
    """Whether a drone created at ``created`` is newer than the row's (unknown: newer)."""
    try:
        return bool(created >= datetime.fromisoformat(str(other_created)))
    except (TypeError, ValueError):
        # the drone writing now is alive; a row whose age cannot be read yields to it
        return True


def load_plugins() -> dict[str, Plugin]:
    """TARDIS's ``load_plugins``, with this module's registry as ``SqliteRegistry``."""
    try:
        names = list(Configuration().Plugins.keys())
    except AttributeError:
        return {}
    plugins: dict[str, Plugin] = {}
    for name in names:
        if name == "SqliteRegistry":
            plugins[name] = SqliteRegistry()
        else:
            plugins[name] = getattr(import_module(f"tardis.plugins.{name.lower()}"), name)()
    return plugins
