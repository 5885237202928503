"""The settings a site adapter reads, built from its schema (``schema/sites.py``).

TARDIS hands adapters an ``AttributeDict`` and leaves validation to them; a missing or
mistyped key would otherwise surface as an ``AttributeError`` deep inside a drone and
kill the daemon. The adapters validate their section against the same schema as
``check`` and take every value, default included, from it. Every problem names the key
path and the configuration file.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..pilot import pilot_path

if TYPE_CHECKING:
    from ..schema.sites import MachineType, SiteSection

SiteSectionT = TypeVar("SiteSectionT", bound="SiteSection")

_HMS = re.compile(r"(?:(\d+):)?(\d+):(\d+)\Z")


class SiteConfigError(ValueError):
    """A site configuration key is missing or has an unusable value."""

    def __init__(self, key_path: str, problem: str, config_file: str | None = None):
        self.key_path = key_path
        self.problem = problem
        self.config_file = config_file or configuration_file()
        where = f"{self.config_file}: " if self.config_file else ""
        super().__init__(f"{where}{key_path}: {problem}")


def configuration_file() -> str | None:
    """The YAML file the daemon was started with, for error messages.

    COBalD does not pass the path to section plugins, but ``python -m cobald.daemon``
    takes it as its only positional argument.
    """
    for arg in sys.argv[1:]:
        if arg.endswith((".yaml", ".yml")) and os.path.exists(arg):
            return arg
    return None


def parse_walltime(value: Any, key_path: str) -> int:
    """Seconds from an int, a numeric string, or ``[[H:]M:]S``."""
    if isinstance(value, bool):
        raise SiteConfigError(key_path, f"expected seconds or H:MM:SS, got {value!r}")
    if isinstance(value, int | float) and value > 0:
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit() and int(text) > 0:
            return int(text)
        match = _HMS.match(text)
        if match:
            hours, minutes, seconds = (int(part or 0) for part in match.groups())
            total = hours * 3600 + minutes * 60 + seconds
            if total > 0:
                return total
    raise SiteConfigError(key_path, f"expected seconds or H:MM:SS, got {value!r}")


@dataclass(frozen=True)
class SiteSettings:
    """Keys of the ``<site name>:`` section shared by every machine type."""

    command_timeout: float
    accounting_grace: float
    job_environment: dict[str, str]

    @classmethod
    def from_schema(cls, section: SiteSection) -> SiteSettings:
        # the defaults are the schema's: an adapter never supplies its own
        return cls(
            command_timeout=float(section.command_timeout),
            accounting_grace=float(section.accounting_grace),
            job_environment=dict(section.JobEnvironment),
        )


@dataclass(frozen=True)
class MachineTypeSettings:
    """Keys of ``<site>.MachineTypeConfiguration.<machine type>`` every adapter reads."""

    startup_command: Path
    walltime: int | None
    queue: str | None
    extra_options: list[str]
    job_environment: dict[str, str]
    log_directory: str | None
    key_prefix: str

    @classmethod
    def from_schema(
        cls, machine_type: MachineType, key_prefix: str, *, queue_key: str
    ) -> MachineTypeSettings:
        return cls(
            # only Local's schema may leave StartupCommand out: the installed pilot then
            startup_command=Path(machine_type.StartupCommand or pilot_path()),
            walltime=machine_type.Walltime,
            queue=getattr(machine_type, queue_key, None),
            extra_options=list(getattr(machine_type, "ExtraOptions", [])),
            job_environment=dict(machine_type.JobEnvironment),
            log_directory=getattr(machine_type, "LogDirectory", None),
            key_prefix=key_prefix,
        )


def validated_section(
    schema: type[SiteSectionT], site_name: str, configuration: Any
) -> SiteSectionT:
    """The site's section as its schema reads it; the first problem as a SiteConfigError.

    The daemon has validated the file already (``startup.py``); this is for adapters
    built elsewhere (``render``, tests) and the one place the adapters get their values
    from, defaults included. Settings only the drone pilot needs are left to ``check``:
    a StartupCommand may be another program.
    """
    from ..schema.validate import validate

    model, findings = validate(schema, _plain(configuration), site_name)
    for finding in findings:
        if not finding.pilot_only:
            raise SiteConfigError(finding.key_path, finding.problem)
    assert model is not None  # no finding: validate returned the model
    return model


def _plain(value: Any) -> Any:
    # TARDIS hands an AttributeDict (a dict) whose mappings may be AttributeDicts too
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
