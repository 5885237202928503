"""Reading and checking the site configuration keys of the batch-site adapters.

TARDIS hands adapters an ``AttributeDict`` and leaves validation to them; a missing or
mistyped key would otherwise surface as an ``AttributeError`` deep inside a drone and
kill the daemon. Every problem here names the key path and the configuration file.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def _string(value: Any, key_path: str) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool) or str(value) == "":
        raise SiteConfigError(key_path, f"expected a non-empty string, got {value!r}")
    return str(value)


def _string_list(value: Any, key_path: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise SiteConfigError(
            key_path, f"expected a list of strings (one argument each), got {value!r}"
        )
    return [_string(item, f"{key_path}[{index}]") for index, item in enumerate(value)]


def _mapping(value: Any, key_path: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SiteConfigError(key_path, f"expected a mapping of NAME: value, got {value!r}")
    return {str(name): "" if item is None else str(item) for name, item in value.items()}


def _number(value: Any, key_path: str, *, minimum: float = 0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise SiteConfigError(key_path, f"expected a number >= {minimum}, got {value!r}")
    return float(value)


def _positive(value: Any, key_path: str) -> float:
    # TARDIS's AsyncBulkCall refuses a window of 0 at its first use, deep inside a drone
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise SiteConfigError(key_path, f"expected a number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SiteSettings:
    """Keys of the ``<site name>:`` section shared by every machine type."""

    bulk_size: int = 100
    bulk_delay: float = 1.0
    command_timeout: float = 60.0
    accounting_grace: float = 30.0
    job_environment: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, site_name: str, section: Mapping[str, Any]) -> SiteSettings:
        # the defaults are the schema's (imported here: the schema uses parse_walltime)
        from ..schema.base import keys
        from ..schema.sites import SiteSection

        defaults = {key: field.default for key, field in keys(SiteSection).items()}

        def get(key: str) -> Any:
            default = defaults[key]
            return section.get(key, default) if hasattr(section, "get") else default

        return cls(
            bulk_size=int(_number(get("bulk_size"), f"{site_name}.bulk_size", minimum=1)),
            bulk_delay=_positive(get("bulk_delay"), f"{site_name}.bulk_delay"),
            command_timeout=_number(
                get("command_timeout"), f"{site_name}.command_timeout", minimum=1
            ),
            accounting_grace=_number(get("accounting_grace"), f"{site_name}.accounting_grace"),
            job_environment=_mapping(get("JobEnvironment"), f"{site_name}.JobEnvironment"),
        )


@dataclass(frozen=True)
class MachineTypeSettings:
    """Keys of ``<site>.MachineTypeConfiguration.<machine type>`` common to batch sites."""

    startup_command: Path
    walltime: int | None
    queue: str | None
    extra_options: list[str]
    job_environment: dict[str, str]
    log_directory: str | None
    raw: Mapping[str, Any]
    key_prefix: str

    @classmethod
    def from_config(
        cls, site_name: str, machine_type: str, section: Mapping[str, Any], *, queue_key: str
    ) -> MachineTypeSettings:
        prefix = f"{site_name}.MachineTypeConfiguration.{machine_type}"
        if not isinstance(section, Mapping):
            raise SiteConfigError(prefix, "missing: every machine type needs its configuration")
        if "StartupCommand" not in section:
            raise SiteConfigError(
                f"{prefix}.StartupCommand",
                "missing: the path of the drone pilot (python -m tardis_sge_dask.pilot --path)",
            )
        startup = Path(_string(section["StartupCommand"], f"{prefix}.StartupCommand"))
        walltime = section.get("Walltime")
        return cls(
            startup_command=startup,
            walltime=None if walltime is None else parse_walltime(walltime, f"{prefix}.Walltime"),
            queue=(
                None
                if section.get(queue_key) is None
                else _string(section[queue_key], f"{prefix}.{queue_key}")
            ),
            extra_options=_string_list(section.get("ExtraOptions"), f"{prefix}.ExtraOptions"),
            job_environment=_mapping(section.get("JobEnvironment"), f"{prefix}.JobEnvironment"),
            log_directory=(
                None
                if section.get("LogDirectory") is None
                else _string(section["LogDirectory"], f"{prefix}.LogDirectory")
            ),
            raw=section,
            key_prefix=prefix,
        )

    def optional_string(self, key: str) -> str | None:
        value = self.raw.get(key)
        return None if value is None else _string(value, f"{self.key_prefix}.{key}")

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise SiteConfigError(
                f"{self.key_prefix}.{key}", f"expected true or false, got {value!r}"
            )
        return value

    def number(self, key: str, default: float, *, minimum: float = 0) -> float:
        return _number(self.raw.get(key, default), f"{self.key_prefix}.{key}", minimum=minimum)
