"""The ``tardis.<site>`` section of each of this package's site adapters.

One class per adapter for the site keys and one for the machine-type keys: defaults,
types and help are declared here once; the adapters read their settings from these
models, ``check`` and the daemon validate against them, docs/configuration.md is tested
against them. Rules between keys (a multi-core SGE drone needs a parallel environment,
the walltime must outlast the pilot's margin, ...) are :meth:`SiteSection.problems`.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Mapping
from typing import ClassVar

from pydantic import Field, validator

from .base import Section
from .pilot import PilotEnvironment, walltime_problem
from .types import (
    AtLeastOne,
    Environment,
    Executor,
    Flag,
    KeyProblem,
    NonNegative,
    PlainName,
    Positive,
    Text,
    TextList,
    Walltime,
    WholeNonNegative,
    WholePositive,
)

#: PATH of a SLURM job (and of sbatch) under ``Export: clean``
DEFAULT_JOB_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EXPORT_MODES = ("clean", "login", "all")


class MachineMetaData(Section):
    Cores: WholePositive = Field(..., description="cores of one drone")
    Memory: Positive = Field(..., description="GB of memory of one drone")
    Disk: Positive = Field(..., description="GB of scratch disk of one drone")


# ---------------------------------------------------------------- machine types
class MachineType(Section):
    """Keys every adapter of this package reads for a machine type."""

    StartupCommand: Text = Field(
        ..., description="the drone pilot's path (python -m tardis_sge_dask.pilot --path)"
    )
    Walltime: Walltime | None = Field(
        None, description="seconds or [[H:]M:]S; also the pilot's PILOT_WALLTIME"
    )
    JobEnvironment: Environment = Field(
        {}, description="NAME: value for the pilot, over the site's JobEnvironment"
    )


class BatchMachineType(MachineType):
    ExtraOptions: TextList = Field([], description="extra submit arguments, one per item")
    LogDirectory: Text | None = Field(None, description="where the job's stdout/stderr go")


class SGEMachineType(BatchMachineType):
    Queue: Text | None = Field(None, description="qsub -q")
    ParallelEnvironment: Text | None = Field(
        None, description="qsub -pe; required for drones of more than one core"
    )
    MemoryResource: Text | None = Field(
        "h_vmem", description="the consumable memory resource, requested per slot"
    )
    Project: Text | None = Field(None, description="qsub -P")
    Notify: Flag = Field(True, description="qsub -notify: qdel warns the pilot first")

    @validator("MemoryResource")
    def _resource_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", value):
            raise ValueError(f"not a Grid Engine resource name: {value!r}")
        return value


class SlurmMachineType(BatchMachineType):
    Partition: Text | None = Field(None, description="sbatch --partition")
    Account: Text | None = Field(None, description="sbatch --account")
    QOS: Text | None = Field(None, description="sbatch --qos")
    StopSignal: Text = Field("USR2", description="the signal that asks the pilot to drain")
    StopGrace: NonNegative = Field(300, description="seconds from StopSignal to scancel")
    WarningTime: WholeNonNegative = Field(
        300, description="seconds before the time limit at which the pilot is warned"
    )
    RequestMemory: Flag = Field(True, description="sbatch --mem from MachineMetaData")
    Export: Text = Field("clean", description="clean, login or all")
    JobPath: Text = Field(DEFAULT_JOB_PATH, description="PATH of the job under Export: clean")

    @validator("StopSignal")
    def _signal(cls, value: str) -> str:
        text = value.strip().upper()
        name = text if text.startswith("SIG") else f"SIG{text}"
        if not (name in signal.Signals.__members__ or text.isdigit()):
            raise ValueError(f"not a signal name: {value!r} (e.g. USR2, TERM)")
        return value

    @validator("WarningTime")
    def _warning_time(cls, value: int) -> int:
        if value > 0xFFFF:
            raise ValueError(f"SLURM takes at most 65535 s, got {value}")
        return value

    @validator("Export")
    def _export(cls, value: str) -> str:
        if value not in EXPORT_MODES:
            raise ValueError(f"expected one of {', '.join(EXPORT_MODES)}, got {value!r}")
        return value


class LocalMachineType(MachineType):
    StartupCommand: Text | None = Field(  # type: ignore[assignment]
        None, description="the drone pilot", doc_default="the installed pilot"
    )


# ------------------------------------------------------------------------ sites
class SiteSection(Section):
    """Keys of ``tardis.<site>`` every adapter of this package reads."""

    machine_type_schema: ClassVar[type[MachineType]] = MachineType
    #: whether a machine type may leave out its MachineTypeConfiguration entry
    machine_configuration_optional: ClassVar[bool] = False

    MachineTypes: list[PlainName] = Field(..., description="the machine types' names")
    MachineMetaData: dict[PlainName, MachineMetaData] = Field(
        ..., description="Cores, Memory (GB) and Disk (GB) of one drone of each type"
    )
    # a Mapping, so that each adapter's section narrows it to its own machine type (and
    # Local to an entry left empty, which machine_type() fills with the defaults)
    MachineTypeConfiguration: Mapping[PlainName, MachineType | None] = Field(
        {},
        description="the submission keys of each machine type",
        doc_default="one per machine type (Local: optional)",
    )
    JobEnvironment: Environment = Field(
        {}, description="NAME: value exported at the top of every job script of the site"
    )
    listing_max_age: NonNegative = Field(
        10, description="seconds one job listing of the site answers every drone's status"
    )
    # accepted so older configurations still load; the cached listing has no window size
    bulk_size: WholePositive = Field(100, description="ignored (was: drones per listing)")
    bulk_delay: Positive = Field(1.0, description="ignored (was: seconds a listing waited)")
    command_timeout: AtLeastOne = Field(60, description="seconds a batch-system command may take")
    accounting_grace: NonNegative = Field(
        30, description="seconds a job may be missing from listing and accounting"
    )

    def machine_type(self, name: str) -> MachineType | None:
        """The machine type's keys (defaults where it may leave them all out)."""
        entry = self.MachineTypeConfiguration.get(name)
        if entry is None and self.machine_configuration_optional:
            return self.machine_type_schema.parse_obj({})
        return entry

    def problems(self) -> list[KeyProblem]:
        """Rules between keys, with key paths relative to the site section."""
        found = []
        for name in self.MachineTypes:
            if name not in self.MachineMetaData:
                found.append(
                    KeyProblem(
                        f"MachineMetaData.{name}",
                        "missing: a machine type without metadata",
                        "give Cores, Memory (GB) and Disk (GB) of one drone of this type",
                    )
                )
            configured = name in self.MachineTypeConfiguration
            if not configured and not self.machine_configuration_optional:
                found.append(
                    KeyProblem(
                        f"MachineTypeConfiguration.{name}",
                        "missing: a machine type without its configuration",
                        "give at least StartupCommand (python -m tardis_sge_dask.pilot --path)",
                    )
                )
                continue
            found += self.machine_type_problems(name)
        for extra in set(self.MachineMetaData) - set(self.MachineTypes):
            found.append(
                KeyProblem(
                    f"MachineMetaData.{extra}",
                    "not listed in MachineTypes",
                    f"add {extra} to MachineTypes or remove its metadata",
                )
            )
        return found

    def machine_type_problems(self, name: str) -> list[KeyProblem]:
        config = self.machine_type(name)
        if config is None:
            return []
        prefix = f"MachineTypeConfiguration.{name}"
        own = bool(config.JobEnvironment)
        environment = PilotEnvironment(**{**self.JobEnvironment, **config.JobEnvironment})
        where = f"{prefix}.JobEnvironment" if own else "JobEnvironment"
        found = [
            KeyProblem(
                f"{where}.{problem.key}",
                problem.problem,
                problem.fix,
                pilot_only=problem.pilot_only,
            )
            for problem in environment.problems()
        ]
        if not any(not problem.pilot_only for problem in found):
            why = walltime_problem(config.Walltime, environment.lifetime_margin)
            if why:
                found.append(
                    KeyProblem(
                        f"{prefix}.Walltime",
                        f"{why} (the pilot exits 10 on every node)",
                        "a longer Walltime or a smaller PILOT_LIFETIME_MARGIN",
                    )
                )
        return found

    def cores(self, name: str) -> int | None:
        meta = self.MachineMetaData.get(name)
        return None if meta is None else int(meta.Cores)


class BatchSiteSection(SiteSection):
    executor: Executor = Field(
        None,
        description="where the batch commands run: !TardisShellExecutor {} or"
        " !TardisSSHExecutor {...}",
        doc_default="the local shell",
    )


class SGESection(BatchSiteSection):
    machine_type_schema = SGEMachineType

    MachineTypeConfiguration: dict[PlainName, SGEMachineType] = Field(
        {},
        description="the submission keys of each machine type",
        doc_default="one per machine type (Local: optional)",
    )

    def machine_type_problems(self, name: str) -> list[KeyProblem]:
        found = super().machine_type_problems(name)
        cores = self.cores(name)
        config = self.machine_type(name)
        if cores and cores > 1 and isinstance(config, SGEMachineType):
            if config.ParallelEnvironment is None:
                found.append(
                    KeyProblem(
                        f"MachineTypeConfiguration.{name}.ParallelEnvironment",
                        f"missing: a drone of {cores} cores needs a parallel environment",
                        "qconf -spl lists them",
                    )
                )
        return found


class SlurmSection(BatchSiteSection):
    machine_type_schema = SlurmMachineType

    MachineTypeConfiguration: dict[PlainName, SlurmMachineType] = Field(
        {},
        description="the submission keys of each machine type",
        doc_default="one per machine type (Local: optional)",
    )

    def machine_type_problems(self, name: str) -> list[KeyProblem]:
        found = super().machine_type_problems(name)
        config = self.machine_type(name)
        if (
            isinstance(config, SlurmMachineType)
            and config.Walltime
            and config.WarningTime >= config.Walltime
        ):
            found.append(
                KeyProblem(
                    f"MachineTypeConfiguration.{name}.WarningTime",
                    f"{config.WarningTime} s is not shorter than the Walltime"
                    f" ({config.Walltime} s)",
                    "a smaller WarningTime or a longer Walltime",
                )
            )
        return found


class LocalSection(SiteSection):
    """Drones as local processes: no executor (nothing is submitted anywhere)."""

    machine_type_schema = LocalMachineType
    machine_configuration_optional = True

    MachineTypeConfiguration: dict[PlainName, LocalMachineType | None] = Field(
        {},
        description="the submission keys of each machine type",
        doc_default="one per machine type (Local: optional)",
    )

    MaxCores: WholePositive | None = Field(
        None,
        description="cores all live drones of the site may use together",
        doc_default="the host's CPUs",
    )
    StateDirectory: Text | None = Field(
        None,
        description="job scripts, one log per drone, pid records",
        doc_default="`~/.local/state/tardis-sge-dask/<site>`",
    )
    StopGrace: NonNegative = Field(60, description="seconds from the retire request to the kill")
    TerminateGrace: NonNegative = Field(5, description="the same for a terminate")

    def machine_type_problems(self, name: str) -> list[KeyProblem]:
        found = super().machine_type_problems(name)
        cores = self.cores(name)
        if self.MaxCores is not None and cores is not None and cores > self.MaxCores:
            found.append(
                KeyProblem(
                    "MaxCores",
                    f"{self.MaxCores} is less than one drone of {name} ({cores} cores):"
                    " no drone could ever start",
                    f"raise MaxCores to at least {cores}",
                )
            )
        return found
