"""``tardis-sge-dask status CONFIG``: the drones, from the registry and the overlay.

The drone registry (TARDIS's SqliteRegistry, ``tardis.Plugins.SqliteRegistry.db_file``)
holds every drone that is not yet down, with its TARDIS state and batch job id. The
overlay adds the name under which the drone serves: the Dask worker (direct mode) or the
HTCondor startd. Reading never changes anything: the database is opened read-only.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .configfile import Tagged, load, tardis_section

_QUERY = """
SELECT R.drone_uuid, R.remote_resource_uuid, RS.state, S.site_name, MT.machine_type,
       R.created, R.updated
FROM Resources R
JOIN ResourceStates RS ON R.state_id = RS.state_id
JOIN Sites S ON R.site_id = S.site_id
JOIN MachineTypes MT ON R.machine_type_id = MT.machine_type_id
ORDER BY R.created
"""


class StatusError(ValueError):
    """The registry cannot be found or read."""


@dataclass
class DroneRow:
    drone_uuid: str
    state: str
    job_id: str
    site: str
    machine_type: str
    created: datetime | None
    worker: str = ""

    def age(self, now: datetime | None = None) -> str:
        if self.created is None:
            return "?"
        seconds = int(((now or datetime.now()) - self.created).total_seconds())
        if seconds < 120:
            return f"{seconds}s"
        if seconds < 7200:
            return f"{seconds // 60}m"
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def registry_file(config: str | Path) -> Path:
    tardis = tardis_section(load(config)) or {}
    registry = ((tardis.get("Plugins") or {}).get("SqliteRegistry") or {}).get("db_file")
    if not registry:
        raise StatusError(
            f"{config}: tardis.Plugins.SqliteRegistry.db_file is not set; without the registry"
            " there is no record of the drones"
        )
    return Path(registry).expanduser()


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def read_registry(db_file: str | Path) -> list[DroneRow]:
    path = Path(db_file)
    if not path.exists():
        raise StatusError(
            f"drone registry {path} does not exist (relative paths are relative to the daemon's"
            " working directory: run status there, or pass --registry)"
        )
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            rows = connection.execute(_QUERY).fetchall()
        finally:
            connection.close()
    except sqlite3.Error as err:
        raise StatusError(f"drone registry {path} cannot be read: {err}") from err
    return [
        DroneRow(
            drone_uuid=row[0],
            job_id="" if row[1] is None else str(row[1]),
            state=str(row[2]).removesuffix("State"),
            site=row[3],
            machine_type=row[4],
            created=_timestamp(row[5]),
        )
        for row in rows
    ]


def dask_workers(batch_system: dict) -> dict[str, str]:
    """drone uuid (= worker name) -> "address (status)" from the Dask scheduler."""
    from .scheduler_rpc import make_security, scheduler_state

    security = make_security(batch_system.get("security"))
    state = asyncio.run(
        scheduler_state(
            batch_system["scheduler_address"], security, float(batch_system.get("timeout", 10))
        )
    )
    return {
        info["name"]: f"{address} ({info['status']}){_at(*worker_location(info['resources']))}"
        for address, info in state["workers"].items()
    }


def worker_location(resources: dict) -> tuple[str, str]:
    """(site, machine type) a drone's Dask worker offers as resources (drone-pilot.sh)."""
    found = {"site": "", "machine-type": ""}
    for name in resources:
        kind, _, value = str(name).partition(":")
        if kind in found and value:
            found[kind] = value
    return found["site"], found["machine-type"]


def _at(site: str, machine_type: str) -> str:
    """The ` at SITE/TYPE` suffix: where the drone says it is (nothing if it does not)."""
    if not site and not machine_type:
        return ""
    return f" at {site or '?'}/{machine_type or '?'}"


#: dask-jobqueue's HTCondorCluster names each worker after its HTCondor job id
#: (``--name htcondor--$F(MY.JobId)--``), so a job id on a drone's slot names the worker
def dask_jobqueue_worker(job_id: str) -> str:
    return f"htcondor--{job_id}--"


def overlay_executor(batch_system: dict):
    """The executor the configuration gives the HTCondor batch system (default: local)."""
    from tardis.utilities.executors.shellexecutor import ShellExecutor

    executor = batch_system.get("executor")
    if executor is None:
        return ShellExecutor()
    if isinstance(executor, Tagged) and executor.tag in ("TardisShellExecutor", "ShellExecutor"):
        return ShellExecutor()
    if isinstance(executor, Tagged) and executor.tag in ("TardisSSHExecutor", "SSHExecutor"):
        from tardis.utilities.executors.sshexecutor import SSHExecutor

        return SSHExecutor(on_disconnect_retry=0, **dict(executor.value or {}))
    raise StatusError(f"tardis.BatchSystem.executor: cannot use {executor!r} here")


def condor_status_command(batch_system: dict) -> list[str]:
    pool = (batch_system.get("options") or {}).get("pool")
    return [
        "condor_status",
        *(["-pool", str(pool)] if pool else []),
        "-constraint",
        "TardisDroneUuid =!= undefined",
        "-af:t",
        "TardisDroneUuid",
        "Name",
        "SlotType",
        "JobId",
        "DaskWorkerName",
        "TardisDroneSite",
        "TardisDroneMachineType",
    ]


def parse_condor_slots(stdout: str) -> dict[str, str]:
    """drone uuid -> "startd NAME at SITE/TYPE; job J = worker W, ..." (``condor_status -af:t``).

    A drone's partitionable slot names its startd; each dynamic slot carved from it runs one
    HTCondor job, whose Dask worker is named after the job id.
    """
    startds: dict[str, str] = {}
    locations: dict[str, str] = {}
    jobs: dict[str, list[tuple[str, str]]] = {}
    for line in stdout.splitlines():
        fields = line.split("\t")
        if len(fields) not in (4, 5, 7) or fields[0] in ("", "undefined"):
            continue
        uuid, name, slot_type, job_id = fields[:4]
        given = [value if value not in ("", "undefined") else "" for value in fields[4:]]
        # the startd publishes the job's DaskWorkerName (STARTD_JOB_ATTRS); older drones
        # do not, and dask-jobqueue's default name is derived from the job id
        worker = given[0] if given else ""
        # where the drone says it is (drones before issue 11 do not say)
        if len(given) == 3 and _at(*given[1:]):
            locations.setdefault(uuid, _at(*given[1:]))
        if slot_type == "Dynamic" and job_id not in ("", "undefined"):
            jobs.setdefault(uuid, []).append((job_id, worker or dask_jobqueue_worker(job_id)))
        else:
            startds.setdefault(uuid, name)
    described = {}
    for uuid in {*startds, *jobs}:
        parts = [f"startd {startds.get(uuid, '?')}{locations.get(uuid, '')}"]
        parts += [f"job {job} = worker {worker}" for job, worker in sorted(jobs.get(uuid, []))]
        described[uuid] = "; ".join(parts)
    return described


def condor_slots(batch_system: dict) -> dict[str, str]:
    """Ask the overlay collector, through the configured executor, what runs on each drone."""
    import shlex

    executor = overlay_executor(batch_system)
    result = asyncio.run(
        asyncio.wait_for(
            executor.run_command(shlex.join(condor_status_command(batch_system))), timeout=60
        )
    )
    return parse_condor_slots(result.stdout)


def collect(config: str | Path, registry: str | Path | None = None) -> tuple[list[DroneRow], str]:
    """The drones and a note on the overlay ("" when it answered)."""
    rows = read_registry(registry or registry_file(config))
    batch_system = (tardis_section(load(config)) or {}).get("BatchSystem") or {}
    adapter = batch_system.get("adapter")
    note = ""
    try:
        if adapter == "Dask":
            names = dask_workers(batch_system)
        elif adapter in ("HTCondor", "HTCondorOverlay"):
            names = condor_slots(batch_system)
        else:
            names = {}
    except Exception as err:  # the registry part is still worth showing
        names = {}
        note = f"overlay ({adapter}) not reachable: {err or type(err).__name__}"
    for row in rows:
        row.worker = names.get(row.drone_uuid, "")
    return rows, note


def select(rows: list[DroneRow], name: str) -> list[DroneRow]:
    """The drones a Dask worker, HTCondor job, batch job or drone name points to."""
    return [
        row
        for row in rows
        if name in (row.drone_uuid, row.job_id)
        or name in row.worker.replace(";", " ").replace("=", " ").split()
    ]


def format_table(rows: list[DroneRow], now: datetime | None = None) -> str:
    header = ("DRONE", "STATE", "JOB", "SITE", "MACHINE TYPE", "AGE", "WORKER/STARTD")
    lines = [
        (r.drone_uuid, r.state, r.job_id, r.site, r.machine_type, r.age(now), r.worker or "-")
        for r in rows
    ]
    widths = [
        max(len(str(item)) for item in column) for column in zip(header, *lines, strict=False)
    ]
    out = [
        "  ".join(str(item).ljust(width) for item, width in zip(line, widths, strict=True))
        for line in (header, *lines)
    ]
    states: dict[str, int] = {}
    for row in rows:
        states[row.state] = states.get(row.state, 0) + 1
    summary = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
    out.append(f"{len(rows)} drone(s){': ' + summary if summary else ''}")
    return "\n".join(line.rstrip() for line in out)


def as_json(rows: list[DroneRow]) -> str:
    return json.dumps(
        [
            {
                **asdict(row),
                "created": row.created.isoformat() if row.created else None,
                "age": row.age(),
            }
            for row in rows
        ],
        indent=2,
    )
