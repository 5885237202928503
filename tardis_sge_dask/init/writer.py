"""Write a :class:`SiteSurvey` as a commented, complete configuration file.

The keys, their order, defaults and one-line help come from the schemas
(:mod:`tardis_sge_dask.schema`, found through :mod:`tardis_sge_dask.registry`): a key the
probe did not set is written with its schema default, or as a comment when it has none,
so the file shows every key an admin may set. A value the probe set carries the command
output it came from; a value it guessed carries the question to ask; a value only the
admin knows is a placeholder (:mod:`.placeholders`) that ``check`` and the daemon refuse.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from ..registry import BATCH_SYSTEMS, SITE_ADAPTERS, TAGS
from ..schema.base import documented_default, help_of, keys
from ..schema.pilot import DEFAULT_LIFETIME_MARGIN
from .model import MachineTypeProposal, SiteSurvey, Sourced
from .placeholders import placeholder

POOL_FACTORY = "tardis_sge_dask.poolfactory.create_composite_pool"
OVERLAYS = ("dask", "htcondor")
WIDTH = 100


class Lines:
    """YAML text with comments, written line by line at an indentation."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def comment(self, indent: int, text: str) -> None:
        for line in textwrap.wrap(text, WIDTH - indent - 2) or [""]:
            self.lines.append(f"{' ' * indent}# {line}".rstrip())

    def blank(self) -> None:
        self.lines.append("")

    def key(self, indent: int, key: str, value: Any = None, *, block: bool = False) -> None:
        if block:
            self.lines.append(f"{' ' * indent}{key}:")
        else:
            self.lines.append(f"{' ' * indent}{key}: {scalar(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class _Raw(str):
    """A YAML fragment written as it is (a tag)."""


def scalar(value: Any) -> str:
    """One value in YAML's flow style, quoted where YAML would read it otherwise."""
    if isinstance(value, _Raw):
        return str(value)
    if value is None:
        return "null"
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def sourced(lines: Lines, indent: int, key: str, item: Sourced, help_text: str = "") -> None:
    """A key set by the probe: its help, where the value came from, what to ask."""
    if help_text:
        lines.comment(indent, f"{key}: {help_text}")
    lines.comment(indent, f"from {item.source}")
    if item.question:
        lines.comment(indent, f"QUESTION: {item.question}")
    lines.key(indent, key, item.value)


def schema_section(
    lines: Lines,
    indent: int,
    model: type[BaseModel],
    values: dict[str, Sourced],
    *,
    skip: Iterable[str] = (),
    blocks: dict[str, Any] | None = None,
    first: Iterable[str] = (),
) -> None:
    """Every key of ``model`` in schema order (``first`` before the others): set ones,
    defaults, and unset ones commented."""
    blocks = blocks or {}
    fields = keys(model)
    order = [*(key for key in first if key in fields), *(key for key in fields if key not in first)]
    for key in order:
        field = fields[key]
        if key in skip:
            continue
        help_text = help_of(model, key)
        if key in blocks:
            lines.comment(indent, f"{key}: {help_text}")
            blocks[key](lines, indent)
        elif key in values:
            sourced(lines, indent, key, values[key], help_text)
        elif field.required:
            lines.comment(indent, f"{key}: {help_text}")
            lines.key(indent, key, placeholder(f"{key}: {help_text}"))
        elif field.get_default() is None or field.get_default() in ({}, []):
            lines.comment(indent, f"{key}: {help_text} (default: {documented_default(model, key)})")
            lines.comment(indent, f"{key}:")
        else:
            lines.comment(indent, f"{key}: {help_text} (the default)")
            lines.key(indent, key, field.get_default())


# ------------------------------------------------------------------ overlays
def overlay_environment(overlay: str) -> dict[str, Sourced]:
    """The pilot settings of the mode: what only the admin knows is a placeholder."""
    if overlay == "dask":
        return {
            "PILOT_MODE": Sourced("dask", "--overlay dask: each drone runs one dask worker"),
            "PILOT_DASK_SCHEDULER": Sourced(
                placeholder("the Dask scheduler's address as the nodes reach it, tcp://HOST:8786"),
                "the users' Dask scheduler",
            ),
            "PILOT_PYTHON": Sourced(
                placeholder(
                    "a Python with the users' dask/distributed on the nodes"
                    " (or set PILOT_CONTAINER to the drone image)"
                ),
                "the nodes' software",
            ),
            "PILOT_CONTAINER": Sourced(
                "none",
                "--overlay dask: the worker runs in PILOT_PYTHON on the node",
                "run the workers in the drone image instead (PILOT_CONTAINER: its path)?",
            ),
            "PILOT_LIFETIME_MARGIN": Sourced(
                str(DEFAULT_LIFETIME_MARGIN),
                "the pilot's default: workers retire this many seconds before the walltime",
            ),
        }
    return {
        "PILOT_MODE": Sourced("htcondor", "--overlay htcondor: each drone runs a startd"),
        "PILOT_COLLECTOR": Sourced(
            placeholder("the overlay pool's collector, HOST:9618"), "the overlay pool"
        ),
        "PILOT_TOKEN_FILE": Sourced(
            placeholder("absolute path of the drones' IDTOKEN on the nodes"),
            "docs/admin-guide.md, Tokens and SSH keys",
        ),
        "PILOT_CONTAINER": Sourced(
            placeholder("the drone image (Apptainer) with HTCondor and dask, or none"),
            "containers/singularity/drone.def",
        ),
        "PILOT_LIFETIME_MARGIN": Sourced(
            str(DEFAULT_LIFETIME_MARGIN),
            "the pilot's default: the startd stops taking jobs this many seconds before the"
            " walltime",
        ),
    }


def write_source(lines: Lines, indent: int, overlay: str) -> None:
    if overlay == "dask":
        model = TAGS["DaskSchedulerDemand"].schema
        lines.lines.append(f"{' ' * indent}source: !DaskSchedulerDemand")
        address = Sourced(
            placeholder("the Dask scheduler the users submit to, tcp://HOST:8786"),
            "the users' Dask scheduler",
        )
        schema_section(lines, indent + 2, model, {"address": address}, skip=("security",))
    else:
        model = TAGS["CondorQueueDemand"].schema
        lines.lines.append(f"{' ' * indent}source: !CondorQueueDemand")
        pool = Sourced(placeholder("the overlay pool's collector, HOST:9618"), "the overlay pool")
        schema_section(lines, indent + 2, model, {"pool": pool}, skip=("executor",))


def write_batch_system(lines: Lines, indent: int, overlay: str) -> None:
    if overlay == "dask":
        model = BATCH_SYSTEMS["Dask"].schema
        values = {
            "adapter": Sourced("Dask", "--overlay dask"),
            "scheduler_address": Sourced(
                placeholder("the Dask scheduler the drones' workers join, tcp://HOST:8786"),
                "the users' Dask scheduler",
            ),
        }
        schema_section(lines, indent, model, values, skip=("security",))
    else:
        model = BATCH_SYSTEMS["HTCondorOverlay"].schema
        values = {
            "adapter": Sourced("HTCondorOverlay", "--overlay htcondor"),
            "max_age": Sourced(1, "configs/physnet.yaml"),
            "ratios": Sourced(
                {
                    "cpu_ratio": "Real(TotalSlotCpus-Cpus)/TotalSlotCpus",
                    "memory_ratio": "Real(TotalSlotMemory-Memory)/TotalSlotMemory",
                },
                "the drones' partitionable slot (docs/configuration.md)",
            ),
            "options": Sourced(
                {"pool": placeholder("the overlay pool's collector, HOST:9618")},
                "the overlay pool",
            ),
        }
        schema_section(lines, indent, model, values, skip=("executor",))


# ---------------------------------------------------------------- the file
def write(
    survey: SiteSurvey,
    *,
    overlay: str,
    site: str,
    executor: dict[str, Any] | None,
    where: str,
    registry: Path,
    startup_command: str,
) -> str:
    entry = SITE_ADAPTERS[survey.adapter]
    quota = survey.quota()
    lines = Lines()
    head(lines, survey, overlay, where)

    # ------------------------------------------------------------ pipeline
    lines.comment(0, "-" * 60 + " COBalD")
    lines.key(0, "pipeline", block=True)
    lines.lines.append("  - !DaskDemandController")
    controller = TAGS["DaskDemandController"].schema
    largest = max((proposal.cores for proposal in survey.machine_types), default=1)
    values = {
        "maximum": Sourced(quota.value, quota.source, quota.question),
        "max_new_cores": Sourced(
            max(largest, quota.value // 2),
            "half the maximum (at least one drone) per interval: no flood of the queue",
        ),
    }

    def machine_types(lines: Lines, indent: int) -> None:
        lines.key(indent, "machine_types", block=True)
        for proposal in survey.machine_types:
            lines.key(indent + 2, proposal.name, block=True)
            lines.key(indent + 4, "Cores", proposal.cores)
            lines.key(indent + 4, "Memory", proposal.memory)
            lines.comment(indent + 4, f"from {proposal.gpus.source}")
            lines.key(indent + 4, "GPUs", proposal.gpus.value)

    schema_section(
        lines,
        4,
        controller,
        values,
        skip=("source",),
        blocks={"machine_types": machine_types} if survey.machine_types else None,
    )
    write_source(lines, 4, overlay)
    lines.lines.append(f"  - __type__: {POOL_FACTORY}")
    lines.comment(4, "seconds between two adjustments of the drone count")
    lines.key(4, "interval", 10)
    lines.blank()
    logging_section(lines)

    # -------------------------------------------------------------- tardis
    lines.comment(0, "-" * 60 + " TARDIS")
    lines.key(0, "tardis", block=True)
    lines.key(2, "Plugins", block=True)
    lines.comment(4, "the drone registry: a restarted daemon takes its drones back")
    lines.key(4, "SqliteRegistry", block=True)
    lines.key(6, "db_file", str(registry))
    lines.key(2, "BatchSystem", block=True)
    write_batch_system(lines, 4, overlay)
    lines.blank()
    lines.key(2, "Sites", block=True)
    lines.lines.append(f"    - name: {site}")
    lines.comment(6, f"this package's {survey.batch_system} adapter")
    lines.key(6, "adapter", survey.adapter)
    lines.comment(6, f"cores all drones of the site may hold together; from {quota.source}")
    if quota.question:
        lines.comment(6, f"QUESTION: {quota.question}")
    lines.key(6, "quota", quota.value)
    lines.key(6, "drone_heartbeat_interval", 60)
    lines.blank()
    site_section(lines, survey, entry.schema, site, executor, overlay, startup_command)
    return lines.text()


def head(lines: Lines, survey: SiteSurvey, overlay: str, where: str) -> None:
    name = {"sge": "Grid Engine", "slurm": "SLURM"}[survey.batch_system]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines.comment(0, f"tardis-sge-dask on a {name} site ({where}), pilot mode {overlay}.")
    lines.comment(0, f"Written by `tardis-sge-dask init` on {stamp}, probing as {survey.user}.")
    lines.comment(0, "")
    lines.comment(
        0,
        "Every value names the command output it came from. QUESTION: marks a value init"
        " chose without knowing; FILL-IN: marks a placeholder only you can fill —"
        " `tardis-sge-dask check` names each one, and the daemon refuses to start with them.",
    )
    lines.comment(0, "")
    lines.comment(0, "  tardis-sge-dask check FILE")
    lines.comment(0, "  tardis-sge-dask render FILE --site SITE --machine-type TYPE")
    lines.comment(0, "  python -m cobald.daemon FILE")
    lines.comment(0, "")
    for note in survey.notes:
        lines.comment(0, note)
    for excluded in survey.excluded:
        lines.comment(0, f"left out: {excluded.name}: {excluded.reason}")
    if not survey.machine_types:
        lines.comment(0, "NO usable queue or partition was found: no machine type below.")
    lines.blank()


def logging_section(lines: Lines) -> None:
    text = yaml.safe_dump(
        {
            "logging": {
                "version": 1,
                "disable_existing_loggers": False,
                "formatters": {
                    "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
                },
                "handlers": {
                    "console": {
                        "class": "logging.StreamHandler",
                        "stream": "ext://sys.stdout",
                        "formatter": "plain",
                    }
                },
                "root": {"level": "INFO", "handlers": ["console"]},
            }
        },
        sort_keys=False,
    )
    lines.comment(0, "Python logging (dictConfig): the daemon's log on stdout")
    lines.lines += text.rstrip("\n").splitlines()
    lines.blank()


def site_section(
    lines: Lines,
    survey: SiteSurvey,
    schema: Any,
    site: str,
    executor: dict[str, Any] | None,
    overlay: str,
    startup_command: str,
) -> None:
    lines.key(2, site, block=True)
    environment = overlay_environment(overlay)
    machine_schema = schema.machine_type_schema

    def write_executor(lines: Lines, indent: int) -> None:
        if executor is None:
            lines.comment(indent, "from init: the batch commands ran on this host")
            lines.key(indent, "executor", _Raw("!TardisShellExecutor {}"))
            return
        lines.comment(indent, "from init --ssh: the batch commands ran over this connection")
        lines.lines.append(f"{' ' * indent}executor: !TardisSSHExecutor")
        for key, value in executor.items():
            lines.key(indent + 2, key, value)

    def write_environment(lines: Lines, indent: int) -> None:
        lines.comment(indent, "settings for the pilot (docs/pilot.md); paths to secrets only")
        lines.key(indent, "JobEnvironment", block=True)
        for key, item in environment.items():
            sourced(lines, indent + 2, key, item)

    def write_names(lines: Lines, indent: int) -> None:
        names = [proposal.name for proposal in survey.machine_types]
        lines.comment(indent, "one machine type per queue or partition the user may submit to")
        lines.key(indent, "MachineTypes", names)

    def write_meta(lines: Lines, indent: int) -> None:
        lines.key(indent, "MachineMetaData", block=True)
        for proposal in survey.machine_types:
            lines.key(indent + 2, proposal.name, block=True)
            for key, item in proposal.meta.items():
                sourced(lines, indent + 4, key, item)

    def write_configuration(lines: Lines, indent: int) -> None:
        lines.key(indent, "MachineTypeConfiguration", block=True)
        for proposal in survey.machine_types:
            lines.key(indent + 2, proposal.name, block=True)
            for note in proposal.notes:
                lines.comment(indent + 4, note)
            schema_section(
                lines,
                indent + 4,
                machine_schema,
                machine_values(proposal, startup_command),
                blocks=(
                    {"JobEnvironment": gpu_environment(proposal)} if proposal.gpus.value else None
                ),
            )

    schema_section(
        lines,
        4,
        schema,
        {},
        blocks={
            "executor": write_executor,
            "JobEnvironment": write_environment,
            "MachineTypes": write_names,
            "MachineMetaData": write_meta,
            "MachineTypeConfiguration": write_configuration,
        },
        first=("executor",),
    )


def machine_values(proposal: MachineTypeProposal, startup_command: str) -> dict[str, Sourced]:
    values = {
        "StartupCommand": Sourced(
            startup_command, "python -m tardis_sge_dask.pilot --path on this host"
        )
    }
    values.update(proposal.config)
    return values


def gpu_environment(proposal: MachineTypeProposal) -> Any:
    def write(lines: Lines, indent: int) -> None:
        lines.key(indent, "JobEnvironment", block=True)
        sourced(
            lines, indent + 2, "PILOT_GPUS", Sourced(str(proposal.gpus.value), proposal.gpus.source)
        )

    return write
