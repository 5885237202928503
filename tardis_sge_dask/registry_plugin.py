"""TARDIS's SqliteRegistry, surviving a reused job id and a file it cannot write for a while.

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

A registry file that cannot be written (its directory made read-only, a full disk) makes
TARDIS's registry raise ``sqlite3.OperationalError`` out of a drone state, which stops the
daemon too. Here the write is kept in memory (per drone only what the file still needs),
one error line names the file, and every later write first retries the kept ones, in
order; when the file takes them one line says so. At start, a registry that cannot be
opened is refused with one line (the ``check`` format) instead of a traceback.

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
from dataclasses import dataclass
from datetime import datetime
from importlib import import_module
from typing import Any

from tardis.configuration.configuration import Configuration
from tardis.interfaces.plugin import Plugin
from tardis.plugins.sqliteregistry import SqliteRegistry as TardisSqliteRegistry

from .sites.settings import SiteConfigError

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
#: seconds between two tries of writes the file refused, without a new write
RETRY_SECONDS = 10.0
_CLEAR = "UPDATE Resources SET remote_resource_uuid = NULL WHERE drone_uuid = :drone_uuid"


@dataclass
class _Write:
    """One of TARDIS's writes of a drone's row, kept until the file takes it."""

    kind: str  #: "insert", "update" or "delete"
    sql_query: str
    bind_parameters: dict

    @property
    def drone_uuid(self) -> str:
        return str(self.bind_parameters.get("drone_uuid"))


class _WriteParameters(dict):
    """Bind parameters of a write (see async_execute), with the kind of write."""

    def __init__(self, kind: str, bind_parameters: dict):
        super().__init__(bind_parameters)
        self.kind = kind


class SqliteRegistry(TardisSqliteRegistry):
    """TARDIS's registry; survives a reused job id and a file it cannot write for a while."""

    def __init__(self) -> None:
        super().__init__()
        #: writes the file refused, oldest first (touched only in the registry's thread)
        self._postponed: list[_Write] = []
        self._retrying: asyncio.Future[None] | None = None

    async def insert_resource(self, bind_parameters: dict) -> None:
        await super().insert_resource(_WriteParameters("insert", bind_parameters))

    async def update_resource(self, bind_parameters: dict) -> None:
        await super().update_resource(_WriteParameters("update", bind_parameters))

    async def delete_resource(self, bind_parameters: dict) -> None:
        await super().delete_resource(_WriteParameters("delete", bind_parameters))

    async def async_execute(self, sql_query: str, bind_parameters: dict) -> list[dict]:
        if not isinstance(bind_parameters, _WriteParameters):
            return await super().async_execute(sql_query, bind_parameters)
        write = _Write(bind_parameters.kind, sql_query, dict(bind_parameters))
        # the registry's single-thread executor keeps every write, postponed ones first,
        # in order
        loop = asyncio.get_running_loop()
        postponed = await loop.run_in_executor(self.thread_pool_executor, self._write, write)
        if postponed and self._retrying is None:
            # drones may keep their state for hours: do not wait for their next write
            self._retrying = asyncio.ensure_future(self._retry_postponed())
        return []

    async def _retry_postponed(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(RETRY_SECONDS)
                if not await loop.run_in_executor(self.thread_pool_executor, self._write, None):
                    return
        finally:
            self._retrying = None

    def _write(self, write: _Write | None) -> bool:
        """Write the postponed writes and then ``write``; whether any is left postponed."""
        was_failing = bool(self._postponed)
        if write is not None:
            self._postpone(write)
        try:
            # one transaction: the file holds all of them or none, never half a drone
            with self.connect() as connection:
                for queued in self._postponed:
                    self._record(connection, queued)
        except sqlite3.OperationalError as err:
            # an exception out of a drone's state stops the whole daemon; the drones
            # live on in memory, and their rows are written when the file takes them
            if not was_failing:
                logger.error(
                    "drone registry %s cannot be written (%s): keeping drone states in"
                    " memory until it can; a daemon restarted before then does not know"
                    " the drones since",
                    self._db_file,
                    err,
                )
            return True
        self._postponed.clear()
        if was_failing:
            logger.warning("drone registry %s written again: no drone state lost", self._db_file)
        return False

    def _postpone(self, write: _Write) -> None:
        """Queue a write, keeping per drone only what the file still needs."""
        mine = [queued for queued in self._postponed if queued.drone_uuid == write.drone_uuid]
        if write.kind == "update":
            # an update writes the whole row: the latest one is enough
            for queued in mine:
                if queued.kind == "update":
                    self._postponed.remove(queued)
        elif write.kind == "delete":
            for queued in mine:
                self._postponed.remove(queued)
            if any(queued.kind == "insert" for queued in mine):
                return  # the row never reached the file
        self._postponed.append(write)

    def _record(self, connection: sqlite3.Connection, write: _Write) -> None:
        bind_parameters = write.bind_parameters
        job_id = bind_parameters.get("remote_resource_uuid")
        if write.kind != "delete" and job_id is not None:
            bind_parameters = self._make_room(connection, bind_parameters, str(job_id))
        connection.execute(write.sql_query, bind_parameters)

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
            plugins[name] = _open_registry()
        else:
            plugins[name] = getattr(import_module(f"tardis.plugins.{name.lower()}"), name)()
    return plugins


def _open_registry() -> SqliteRegistry:
    try:
        return SqliteRegistry()
    except sqlite3.OperationalError as err:
        # at start nothing is lost yet: refuse with one line instead of a traceback
        db_file = Configuration().Plugins.SqliteRegistry.db_file
        raise SiteConfigError(
            "Plugins.SqliteRegistry.db_file",
            f"cannot open the drone registry {db_file} ({err}); its directory must exist"
            " and be writable by the daemon's user",
        ) from None
