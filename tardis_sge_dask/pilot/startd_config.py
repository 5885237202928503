"""The HTCondor configuration of a drone's startd (``PILOT_MODE=htcondor``).

``render_startd_config`` is a pure function of :class:`StartdSettings`; the pilot calls
``python -m tardis_sge_dask.pilot.startd_config --scratch DIR --output FILE`` inside the
drone image, which builds the settings from the pilot's environment.

What the rest of the system relies on:
- TARDIS's HTCondor adapter finds a drone by the startd attribute ``TardisDroneUuid`` on a
  *partitionable* slot and drains it with ``condor_drain -graceful``, so the uuid is
  advertised through ``STARTD_ATTRS`` and is also the ``STARTD_NAME``.
- The token is read from a directory (``SEC_TOKEN_DIRECTORY``), never from the command
  line or the environment: both are visible to other users of the batch system.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .rules import DEFAULT_LIFETIME_MARGIN, walltime_problem

#: The jobs a drone takes by default: the ones the demand controller counts as Dask workers
#: (``tardis_sge_dask.demand.htcondor.DEFAULT_CONSTRAINT``), so that no waiting job brings
#: drones up that then refuse it (docs/pilot.md, PILOT_START_EXPRESSION). dask-jobqueue's
#: HTCondorCluster gives every worker job ``DaskWorkerCores``, OverlayCluster adds
#: ``IsDaskWorker``, htcdaskgateway marks its workers ``isDaskJob``. Parenthesised whole, so
#: ``DASK_WORKER_START && X`` in a custom PILOT_START_EXPRESSION narrows all three.
DASK_WORKER_START = (
    "((TARGET.IsDaskWorker =?= true) || (TARGET.DaskWorkerCores =!= undefined)"
    " || (TARGET.IsDaskJob =?= true))"
)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_HOST = re.compile(r"[A-Za-z0-9_.:\[\]-]+(\?[A-Za-z0-9_=&.-]+)?\Z")
# written between double quotes as it is: no escapes, no line breaks
_CLASSAD_STRING = re.compile(r'[^"\\\x00-\x1f\x7f]+\Z')
# paths and PATH lists written into the configuration unquoted
_PATH = re.compile(r"/[A-Za-z0-9_.:/+-]*\Z")

#: where HTCondor's packages (Debian, RHEL, the image) keep their base configuration
IMAGE_CONDOR_CONFIG = "/etc/condor/condor_config"


class StartdConfigError(ValueError):
    """The settings cannot make a sound startd configuration."""


@dataclass(frozen=True)
class StartdSettings:
    uuid: str
    cores: int
    memory_mb: int
    disk_kib: int
    collector: str
    local_dir: str
    token_dir: str
    ccb: str | None = None
    start_expression: str = DASK_WORKER_START
    idle_timeout: int = 600
    walltime: int | None = None
    lifetime_margin: int = DEFAULT_LIFETIME_MARGIN
    started_at: int = 0
    gpus: int = 0
    #: the device ids the batch system gave the job (CUDA_VISIBLE_DEVICES), if it says
    gpu_ids: tuple[str, ...] = ()
    #: the image's own HTCondor configuration files in HTCondor's reading order, read
    #: first (RELEASE_DIR, LIBEXEC, ...); see :func:`image_config_files`
    base_configs: tuple[str, ...] = ()
    #: PATH of the drone's payload environment, handed to jobs (the image's Dask python)
    job_path: str | None = None
    #: seconds between the startd's updates to the collector (None: HTCondor's 300); after
    #: a collector restart a drone is back in the pool within this time
    update_interval: int | None = None
    #: the X.509 proxy the pilot checked (X509_USER_PROXY) and the trust directory
    #: (X509_CERT_DIR), handed to jobs: a job's grid client finds them as on a worker node
    x509_user_proxy: str | None = None
    x509_cert_dir: str | None = None
    #: the COBalD/TARDIS site and machine type the drone belongs to (PILOT_SITE,
    #: PILOT_MACHINE_TYPE): a job asks for a site with TARGET.TardisDroneSite
    site: str | None = None
    machine_type: str | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.uuid):
            raise StartdConfigError(f"drone uuid {self.uuid!r} is not a valid startd name")
        for name in ("cores", "memory_mb", "disk_kib"):
            if getattr(self, name) <= 0:
                raise StartdConfigError(f"{name} must be positive, not {getattr(self, name)}")
        for name in ("collector", "ccb"):
            value = getattr(self, name)
            if value is not None and not _HOST.match(value):
                raise StartdConfigError(f"{name} {value!r} is not a host[:port] address")
        if "\n" in self.start_expression or not self.start_expression.strip():
            raise StartdConfigError("the START expression must be one non-empty line")
        if self.gpus < 0 or (self.gpu_ids and len(self.gpu_ids) != self.gpus):
            raise StartdConfigError(
                f"{self.gpus} GPU(s) promised, but the batch system gave {len(self.gpu_ids)}"
                f" ({','.join(self.gpu_ids)})"
            )
        for value in (self.local_dir, self.token_dir, *self.base_configs):
            if not _PATH.match(value):
                raise StartdConfigError(f"{value!r} is not a plain absolute path")
        if any(not _NAME.match(gpu) for gpu in self.gpu_ids):
            raise StartdConfigError(f"GPU ids {self.gpu_ids!r} are not plain names")
        if self.job_path is not None and not all(
            _PATH.match(part) for part in self.job_path.split(":")
        ):
            raise StartdConfigError(f"job PATH {self.job_path!r} is not a list of plain paths")
        for name in ("x509_user_proxy", "x509_cert_dir"):
            value = getattr(self, name)
            if value is not None and not _PATH.match(value):
                raise StartdConfigError(f"{name} {value!r} is not a plain absolute path")
        if self.update_interval is not None and self.update_interval <= 0:
            raise StartdConfigError(f"update interval {self.update_interval} is not positive")
        for name in ("site", "machine_type"):
            value = getattr(self, name)
            if value is not None and not _CLASSAD_STRING.match(value):
                raise StartdConfigError(f"{name} {value!r} cannot be a ClassAd string")
        why = walltime_problem(self.walltime, self.lifetime_margin)
        if why:
            raise StartdConfigError(f"walltime {why}")

    @property
    def retire_time(self) -> int | None:
        """Epoch after which the drone takes no new job and its startd leaves."""
        if self.walltime is None:
            return None
        return self.started_at + self.walltime - self.lifetime_margin


def render_startd_config(settings: StartdSettings) -> str:
    """Return the condor_config text for one drone startd."""
    s = settings
    ccb = s.ccb or "$(COLLECTOR_HOST)"
    start = f"({s.start_expression})"
    retire = s.retire_time
    lines = [f"# Generated by tardis_sge_dask.pilot.startd_config for drone {s.uuid}"]
    if s.base_configs:
        # On top of the image's configuration, not instead of it: without RELEASE_DIR and
        # LIBEXEC the startd cannot even run its GPU discovery. HTCondor reads a config
        # directory only after the whole top-level file, so the image's files are included
        # here one by one, in its order, and then switched off: the drone's settings win.
        lines += [f"include : {path}" for path in s.base_configs]
        lines += ["LOCAL_CONFIG_DIR =", "LOCAL_CONFIG_FILE =", ""]
    lines += [
        f"LOCAL_DIR = {s.local_dir}",
        "LOG = $(LOCAL_DIR)/log",
        "SPOOL = $(LOCAL_DIR)/spool",
        "EXECUTE = $(LOCAL_DIR)/execute",
        "LOCK = $(LOCAL_DIR)/lock",
        "RUN = $(LOCAL_DIR)/run",
        "DAEMON_LIST = MASTER, STARTD",
        "",
        "# The overlay pool, reached outbound only (CCB). No shared port: an unprivileged",
        "# master in a container cannot start condor_shared_port.",
        f"CONDOR_HOST = {s.collector}",
        f"COLLECTOR_HOST = {s.collector}",
        f"CCB_ADDRESS = {ccb}",
        "USE_SHARED_PORT = False",
        "",
        "# IDTOKENS towards the pool. FS only for this drone's own user, so the pilot can",
        "# run condor_off: its proof file goes to the scratch directory, which every",
        "# container of this drone sees (each has a private /tmp).",
        f"SEC_TOKEN_DIRECTORY = {s.token_dir}",
        "SEC_DEFAULT_AUTHENTICATION = REQUIRED",
        "SEC_DEFAULT_AUTHENTICATION_METHODS = IDTOKENS, FS",
        "SEC_DEFAULT_ENCRYPTION = REQUIRED",
        "SEC_DEFAULT_INTEGRITY = REQUIRED",
        "FS_LOCAL_DIR = $(LOCAL_DIR)/fs",
        "ALLOW_ADMINISTRATOR = $(ALLOW_ADMINISTRATOR) $(USERNAME)@*",
        "# A master's family session is refused by a pool whose own master shares the host",
        "# (the tests' single machine); separate sessions cost a handshake, nothing more.",
        "SEC_USE_FAMILY_SESSION = False",
        "",
    ]
    if s.update_interval:
        # after a collector restart the drone is back in the pool within this time
        lines += [f"UPDATE_INTERVAL = {s.update_interval}", ""]
    lines += [
        "# TARDIS's HTCondor adapter finds the drone by this attribute.",
        f"STARTD_NAME = {s.uuid}",
        f'TardisDroneUuid = "{s.uuid}"',
        f"TardisDroneCores = {s.cores}",
        f"TardisDroneMemory = {s.memory_mb}",
        f"TardisDroneDisk = {s.disk_kib}",
        "# htcdaskgateway's worker jobs ask for machines with requirements = (isDaskNode == True)",
        "IsDaskNode = True",
    ]
    attrs = [
        "TardisDroneUuid",
        "TardisDroneCores",
        "TardisDroneMemory",
        "TardisDroneDisk",
        "IsDaskNode",
    ]
    for attribute, value in (
        ("TardisDroneSite", s.site),
        ("TardisDroneMachineType", s.machine_type),
    ):
        if value:
            # jobs pinned to a site match on it; status and the admin read both
            lines.append(f'{attribute} = "{value}"')
            attrs.append(attribute)
    if s.gpus:
        lines.append(f"TardisDroneGPUs = {s.gpus}")
        attrs.append("TardisDroneGPUs")
    if retire is not None:
        lines.append(f"TardisDroneRetireTime = {retire}")
        attrs.append("TardisDroneRetireTime")
        start = f"{start} && (time() < TardisDroneRetireTime)"
    lines += [
        f"STARTD_ATTRS = $(STARTD_ATTRS) {' '.join(attrs)}",
        "# each job slot names its Dask worker, so `tardis-sge-dask status` can map it",
        "STARTD_JOB_ATTRS = $(STARTD_JOB_ATTRS) DaskWorkerName",
        "",
        "# One partitionable slot holding everything the batch job was given.",
        f"NUM_CPUS = {s.cores}",
        f"MEMORY = {s.memory_mb}",
        "NUM_SLOTS = 1",
        "NUM_SLOTS_TYPE_1 = 1",
    ]
    if s.gpus:
        # Only the GPUs the batch system gave this job, not the node's others: a static
        # machine resource (discovery would see every GPU of the node). Jobs ask with
        # request_gpus and find theirs in CUDA_VISIBLE_DEVICES.
        lines += [
            f"MACHINE_RESOURCE_GPUs = {', '.join(s.gpu_ids) if s.gpu_ids else s.gpus}",
            "ENVIRONMENT_FOR_AssignedGPUs = CUDA_VISIBLE_DEVICES",
            "SLOT_TYPE_1 = cpus=100%, memory=100%, disk=100%, gpus=100%",
        ]
    else:
        lines.append("SLOT_TYPE_1 = cpus=100%, memory=100%, disk=100%")
    lines += [
        "SLOT_TYPE_1_PARTITIONABLE = True",
        "",
        f"START = {start}",
        "SUSPEND = False",
        "PREEMPT = False",
        "KILL = False",
        "",
    ]
    # Jobs get a bare environment: `python3` must be the image's Dask interpreter, and a
    # job's gfal2/XRootD client must find the drone's proxy and trust directory.
    job_environment = [
        f"{name}={value}"
        for name, value in (
            ("PATH", s.job_path),
            ("X509_USER_PROXY", s.x509_user_proxy),
            ("X509_CERT_DIR", s.x509_cert_dir),
        )
        if value
    ]
    if job_environment:
        lines.append(f'STARTER_JOB_ENVIRONMENT = "{" ".join(job_environment)}"')
    lines += [
        "# Leave when idle, and before the batch system's walltime kill.",
        f"STARTD_NOCLAIM_SHUTDOWN = {s.idle_timeout}",
    ]
    if retire is not None:
        # Running jobs get what is left of the margin to finish after the startd retires.
        lines += [
            "STARTD.DAEMON_SHUTDOWN = time() > TardisDroneRetireTime",
            f"MAXJOBRETIREMENTTIME = {max(s.lifetime_margin - 60, 0)}",
        ]
    lines += [
        "# The master leaves with the startd, so the batch job ends.",
        "MASTER.DAEMON_SHUTDOWN = STARTD_StartTime =?= 0",
        "",
    ]
    return "\n".join(lines)


def _plain_path_list(value: str) -> str | None:
    """The PATH entries a configuration can carry unquoted; None when there are none."""
    parts = [part for part in value.split(":") if _PATH.match(part)]
    return ":".join(parts) or None


def image_config_files(base_config: str) -> tuple[str, ...]:
    """The files of the image's HTCondor configuration, in the order HTCondor reads them.

    ``condor_config_val -config`` answers from the image's own HTCondor, so its local
    config directories, exclusion rules and includes are followed exactly.
    """
    if not os.path.isfile(base_config):
        raise StartdConfigError(
            f"the image has no HTCondor configuration at {base_config}"
            " (set PILOT_IMAGE_CONDOR_CONFIG to the image's condor_config)"
        )
    environ = {k: v for k, v in os.environ.items() if not k.upper().startswith("_CONDOR_")}
    environ["CONDOR_CONFIG"] = base_config
    try:
        answer = subprocess.run(
            ["condor_config_val", "-config"],
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as err:
        raise StartdConfigError(f"condor_config_val -config failed in the image: {err}") from None
    if answer.returncode != 0:
        said = " ".join(answer.stderr.split())[-300:]
        raise StartdConfigError(
            f"condor_config_val -config failed in the image (exit {answer.returncode}): {said}"
        )
    files = [line.strip() for line in answer.stdout.splitlines() if line[:1].isspace()]
    files = [path for path in files if path.startswith("/") and os.path.isfile(path)]
    return tuple(dict.fromkeys(files)) or (base_config,)


def settings_from_environment(
    environ: Mapping[str, str],
    scratch: str | Path,
    now: int | None = None,
    base_configs: tuple[str, ...] = (),
) -> StartdSettings:
    """Build the settings from the pilot's environment (docs/pilot.md)."""

    def number(name: str, default: int | None = None) -> int | None:
        value = environ.get(name, "")
        if value == "":
            if default is None:
                return None
            return default
        try:
            return int(value)
        except ValueError:
            raise StartdConfigError(f"{name}={value!r} is not an integer") from None

    missing = [
        name
        for name in (
            "TardisDroneUuid",
            "TardisDroneCores",
            "TardisDroneMemory",
            "TardisDroneDisk",
            "PILOT_COLLECTOR",
        )
        if not environ.get(name)
    ]
    if missing:
        raise StartdConfigError(f"missing settings: {', '.join(missing)}")
    scratch = Path(scratch)
    # SLURM (gres) and many SGE GPU setups name the job's devices in CUDA_VISIBLE_DEVICES
    visible = environ.get("CUDA_VISIBLE_DEVICES", "")
    gpu_ids = tuple(
        gpu.strip() for gpu in visible.split(",") if gpu.strip() and visible != "NoDevFiles"
    )
    promised = number("PILOT_GPUS", len(gpu_ids)) or 0
    # never advertise a GPU the batch system did not give this job
    gpu_ids = gpu_ids[:promised]
    gpus = len(gpu_ids) if gpu_ids else promised
    return StartdSettings(
        uuid=environ["TardisDroneUuid"],
        cores=number("TardisDroneCores") or 0,
        memory_mb=number("TardisDroneMemory") or 0,
        disk_kib=number("TardisDroneDisk") or 0,
        collector=environ["PILOT_COLLECTOR"],
        ccb=environ.get("PILOT_CCB") or None,
        local_dir=str(scratch / "condor"),
        token_dir=str(scratch / "tokens.d"),
        start_expression=environ.get("PILOT_START_EXPRESSION") or DASK_WORKER_START,
        idle_timeout=number("PILOT_IDLE_TIMEOUT", 600) or 0,
        walltime=number("PILOT_WALLTIME"),
        lifetime_margin=number("PILOT_LIFETIME_MARGIN", DEFAULT_LIFETIME_MARGIN) or 0,
        started_at=int(time.time()) if now is None else now,
        gpus=gpus,
        gpu_ids=gpu_ids,
        base_configs=base_configs,
        job_path=_plain_path_list(environ.get("PATH", "")),
        update_interval=number("PILOT_STARTD_UPDATE_INTERVAL"),
        x509_user_proxy=environ.get("X509_USER_PROXY") or None,
        x509_cert_dir=environ.get("X509_CERT_DIR") or None,
        site=environ.get("PILOT_SITE") or None,
        machine_type=environ.get("PILOT_MACHINE_TYPE") or None,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a drone startd's condor_config.")
    parser.add_argument("--scratch", required=True, help="the drone's scratch directory")
    parser.add_argument("--output", required=True, help="where to write the configuration")
    parser.add_argument(
        "--base-config",
        default=os.environ.get("PILOT_IMAGE_CONDOR_CONFIG") or IMAGE_CONDOR_CONFIG,
        help="the image's own HTCondor configuration, read first ('' for none)",
    )
    args = parser.parse_args(argv)
    try:
        base_configs = image_config_files(args.base_config) if args.base_config else ()
        settings = settings_from_environment(os.environ, args.scratch, base_configs=base_configs)
    except StartdConfigError as err:
        print(f"startd_config: error: {err}", file=sys.stderr)
        return 2
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    for sub in ("log", "spool", "execute", "lock", "run", "fs"):
        (Path(settings.local_dir) / sub).mkdir(parents=True, exist_ok=True)
    output.write_text(render_startd_config(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
