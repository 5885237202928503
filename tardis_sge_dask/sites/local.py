"""The embedded default: drones as local processes, ``adapter: Local``.

A drone is the same job script a batch site would get (the pilot behind its ``export``
lines, ``PILOT_BATCH_SYSTEM=local``), run by ``bash`` in a session of its own on this
host — Dask's ``LocalCluster`` for this world. The settings, the job script and the
mapping of failures come from the layer every adapter shares
(:class:`~.jobsite.JobScriptSiteAdapter`, :meth:`render_submission`), so what ``render``
shows is what runs; nothing of the batch-command layer (executor, listings, accounting).
The /proc helpers are :mod:`.processes`.

* the drone's id is ``PID-STARTTICKS``: the pid alone may be reused, the start time in
  ``/proc/PID/stat`` makes it unique, so a daemon restarted from the SqliteRegistry finds
  its drones again (they run in their own session and outlive the daemon);
* the cores of the live drones of a site never exceed ``MaxCores`` (default: this
  host's CPUs); a deployment beyond it is refused with ``TardisQuotaExceeded``;
* stop = SIGTERM to the pilot, which retires its worker (the warning signal of
  ``PILOT_BATCH_SYSTEM=local``); after ``StopGrace`` seconds the whole process tree is
  killed. Terminate = SIGTERM, then the kill after ``TerminateGrace`` seconds.

Site keys (besides the machine types)::

    Local:
      MaxCores: 2              # cores all live drones of this site may use together
      StateDirectory: /var/lib/tardis-sge-dask/local   # job scripts, logs, pid records
      StopGrace: 60            # seconds from SIGTERM to the kill on a stop
      TerminateGrace: 5        # the same for terminate
      MachineTypeConfiguration:
        local1:
          StartupCommand: ...  # optional: the installed pilot by default
          JobEnvironment: {PILOT_DASK_SCHEDULER: tcp://127.0.0.1:8786}
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO, ClassVar

from tardis.exceptions.tardisexceptions import TardisQuotaExceeded
from tardis.interfaces.siteadapter import ResourceStatus
from tardis.utilities.attributedict import AttributeDict

from ..schema.sites import LocalSection
from .jobsite import JobScriptSiteAdapter
from .processes import kill_tree, parse_drone_id, process_start
from .settings import SiteConfigError

logger = logging.getLogger("cobald.runtime.tardis_sge_dask.sites.local")


def default_state_directory(site_name: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "tardis-sge-dask" / site_name


def _open_private(path: Path, mode_flag: int) -> BinaryIO:
    """Open for writing, readable by this user alone whatever the umask or an older file's mode.

    The job script holds the drone's settings and the log what the pilot prints: other
    users of this host must not read them.
    """
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | mode_flag, 0o600)
    os.fchmod(descriptor, 0o600)
    return os.fdopen(descriptor, "ab" if mode_flag & os.O_APPEND else "wb")


def _write_private(path: Path, text: str) -> None:
    with _open_private(path, os.O_TRUNC) as handle:
        handle.write(text.encode())


class LocalAdapter(JobScriptSiteAdapter):
    """Drones as pilot processes on this host."""

    batch_system = "local"
    schema = LocalSection
    #: cores of the live drones, per site: {site: {drone uuid: cores}}
    _cores_in_use: ClassVar[dict[str, dict[str, int]]] = {}

    def check_settings(self) -> None:
        site = self.site_config
        assert isinstance(site, LocalSection)
        self.max_cores = site.MaxCores or os.cpu_count() or 1
        self.stop_grace = float(site.StopGrace)
        self.terminate_grace = float(site.TerminateGrace)
        self.state_directory = (
            Path(os.path.expanduser(site.StateDirectory))
            if site.StateDirectory
            else default_state_directory(self.site_name)
        )
        cores = self.site_config.cores(self.machine_type)
        if cores is not None and cores > self.max_cores:
            # the schema knows MaxCores only when it is given; the host's CPUs are known here
            raise SiteConfigError(
                f"{self.site_name}.MaxCores",
                f"{self.max_cores} (this host's CPUs) is less than one drone of"
                f" {self.machine_type} ({cores} cores): no drone could ever start",
            )
        self.cores = cores or 1
        self._processes: dict[int, subprocess.Popen] = {}
        self._kill_due: dict[str, float] = {}
        self._tasks: set[asyncio.Task] = set()

    # ------------------------------------------------------------- the job script
    def pilot_environment(self) -> dict[str, str]:
        # the drone runs in this very environment: the daemon's Python has dask installed
        environment = {"PILOT_PYTHON": sys.executable, "PILOT_CONTAINER": "none"}
        environment.update(super().pilot_environment())
        return environment

    def script_path(self, drone_uuid: str) -> Path:
        return self.state_directory / f"{drone_uuid}.sh"

    def submit_command(self, drone_uuid: str, environment: Mapping[str, str]) -> list[str]:
        pairs = [f"{name}={value}" for name, value in environment.items()]
        return ["env", *pairs, "bash", str(self.script_path(drone_uuid))]

    @staticmethod
    def translate_state(state: str) -> ResourceStatus:
        """The TARDIS status of a process state letter of /proc/PID/stat."""
        if state in ("Z", "X", "x"):
            return ResourceStatus.Deleted
        if state in ("T", "t"):
            return ResourceStatus.Stopped
        return ResourceStatus.Running

    # ------------------------------------------------------------- TARDIS API
    async def deploy_resource(self, resource_attributes: AttributeDict) -> AttributeDict:
        drone_uuid = resource_attributes.drone_uuid
        in_use = self._cores_in_use.setdefault(self.site_name, {})
        used = sum(cores for uuid, cores in in_use.items() if uuid != drone_uuid)
        if used + self.cores > self.max_cores:
            logger.info(
                "%s: %d of %d cores in use, no room for a drone of %d cores",
                self.site_name,
                used,
                self.max_cores,
                self.cores,
            )
            raise TardisQuotaExceeded(
                f"{self.site_name}: MaxCores {self.max_cores} reached ({used} in use)"
            )
        argv, script = self.render_submission(resource_attributes)
        self.state_directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        script_file = self.script_path(drone_uuid)
        _write_private(script_file, script)
        log = _open_private(self.state_directory / f"{drone_uuid}.log", os.O_APPEND)
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.state_directory,
                # own session: the daemon's terminal or service stop must not hit the drone
                start_new_session=True,
                close_fds=True,
            )
        finally:
            log.close()
        start = process_start(process.pid)
        ticks = start[0] if start else 0
        remote_id = f"{process.pid}-{ticks}"
        self._processes[process.pid] = process
        in_use[drone_uuid] = self.cores
        _write_private(
            self.state_directory / f"{drone_uuid}.json",
            json.dumps({"pid": process.pid, "start": ticks, "remote_resource_uuid": remote_id}),
        )
        logger.info(
            "drone %s (%s/%s): started as local process %s (%s)",
            drone_uuid,
            self.site_name,
            self.machine_type,
            process.pid,
            shlex.join(argv[-2:]),
        )
        return AttributeDict(remote_resource_uuid=remote_id, resource_status=ResourceStatus.Booting)

    def _remote_id(self, resource_attributes: AttributeDict) -> str | None:
        remote_id = resource_attributes.get("remote_resource_uuid")
        if remote_id:
            return str(remote_id)
        # restored before the registry recorded the start: the pid record tells
        record = self.state_directory / f"{resource_attributes.drone_uuid}.json"
        try:
            return json.loads(record.read_text())["remote_resource_uuid"]
        except (OSError, ValueError, KeyError):
            return None

    def _status(self, remote_id: str | None) -> ResourceStatus:
        parsed = parse_drone_id(remote_id)
        if parsed is None:
            return ResourceStatus.Deleted
        pid, ticks = parsed
        process = self._processes.get(pid)
        if process is not None and process.poll() is not None:
            # our own child: reaped here, so its exit code is known
            del self._processes[pid]
            level = logging.INFO if process.returncode == 0 else logging.WARNING
            logger.log(
                level,
                "%s: local drone process %s exited with %s",
                self.site_name,
                pid,
                process.returncode,
            )
            return ResourceStatus.Deleted
        current = process_start(pid)
        if current is None or current[0] != ticks:
            return ResourceStatus.Deleted  # gone, or the pid now belongs to another process
        return self.translate_state(current[1])

    async def resource_status(self, resource_attributes: AttributeDict) -> AttributeDict:
        drone_uuid = resource_attributes.drone_uuid
        remote_id = self._remote_id(resource_attributes)
        status = self._status(remote_id)
        in_use = self._cores_in_use.setdefault(self.site_name, {})
        if status is ResourceStatus.Deleted:
            in_use.pop(drone_uuid, None)
            self._kill_due.pop(drone_uuid, None)
            # the pid record goes only once the process is known dead; the log stays
            for suffix in (".json", ".sh"):
                (self.state_directory / f"{drone_uuid}{suffix}").unlink(missing_ok=True)
        else:
            in_use.setdefault(drone_uuid, self.cores)  # restored drones count as well
            due = self._kill_due.get(drone_uuid)
            if due is not None and time.monotonic() >= due:
                self._kill(drone_uuid, remote_id)
        result = AttributeDict(resource_status=status)
        if remote_id is not None:
            result["remote_resource_uuid"] = remote_id
        return result

    def _signal(self, remote_id: str | None, signum: int) -> bool:
        parsed = parse_drone_id(remote_id)
        if parsed is None or self._status(remote_id) is ResourceStatus.Deleted:
            return False
        try:
            os.kill(parsed[0], signum)
        except ProcessLookupError:
            return False
        return True

    def _kill(self, drone_uuid: str, remote_id: str | None) -> None:
        self._kill_due.pop(drone_uuid, None)
        parsed = parse_drone_id(remote_id)
        if parsed is None or self._status(remote_id) is ResourceStatus.Deleted:
            return
        count = kill_tree(parsed[0])
        logger.warning(
            "drone %s (%s): still running after its grace; killed %d process(es)",
            drone_uuid,
            self.site_name,
            count,
        )

    def _schedule_kill(self, resource_attributes: AttributeDict, grace: float) -> None:
        drone_uuid = resource_attributes.drone_uuid
        remote_id = self._remote_id(resource_attributes)
        due = time.monotonic() + grace
        self._kill_due[drone_uuid] = min(due, self._kill_due.get(drone_uuid, due))

        async def later() -> None:
            await asyncio.sleep(grace)
            if drone_uuid in self._kill_due:
                try:
                    self._kill(drone_uuid, remote_id)
                except Exception:  # a task of its own must not die loudly
                    logger.exception("%s: killing drone %s failed", self.site_name, drone_uuid)

        task = asyncio.get_running_loop().create_task(later())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop_resource(self, resource_attributes: AttributeDict) -> None:
        with self.handle_exceptions():
            remote_id = self._remote_id(resource_attributes)
            if self._signal(remote_id, signal.SIGTERM):
                logger.info(
                    "%s: SIGTERM sent, the pilot retires its worker (kill in %.0f s)",
                    self.describe(resource_attributes),
                    self.stop_grace,
                )
                self._schedule_kill(resource_attributes, self.stop_grace)

    async def terminate_resource(self, resource_attributes: AttributeDict) -> None:
        with self.handle_exceptions():
            remote_id = self._remote_id(resource_attributes)
            if self._signal(remote_id, signal.SIGTERM):
                logger.info(
                    "%s: terminating (kill in %.0f s)",
                    self.describe(resource_attributes),
                    self.terminate_grace,
                )
                self._schedule_kill(resource_attributes, self.terminate_grace)
