"""An adapter's effective defaults are its schema's, hence the documented ones.

docs/configuration.md is held to the schemas by test_docs_schema.py; here every adapter
of the registry is built twice, once with only the required keys and once with every
other key written out at its schema default. A default the adapter supplies itself
(beside the schema) shows up as a difference in what the drone gets or in the adapter's
settings.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from tardis_sge_dask.registry import SITE_ADAPTERS
from tardis_sge_dask.schema.base import keys
from tests.helpers.tardis_config import MACHINE_TYPE, drone, make_adapter

STRUCTURE = {"MachineTypes", "MachineMetaData", "MachineTypeConfiguration"}


def minimal_section(pilot: str) -> dict[str, Any]:
    return {
        "MachineTypes": [MACHINE_TYPE],
        # one core: no key becomes required by another (SGE's ParallelEnvironment)
        "MachineMetaData": {MACHINE_TYPE: {"Cores": 1, "Memory": 2, "Disk": 3}},
        "MachineTypeConfiguration": {MACHINE_TYPE: {"StartupCommand": pilot}},
    }


def schema_defaults(schema) -> dict[str, Any]:
    """Every optional key with a value of its own (None means "unset", not a default)."""
    return {
        key: field.get_default()
        for key, field in keys(schema).items()
        if not field.required and key not in STRUCTURE and field.get_default() is not None
    }


def snapshot(adapter) -> dict[str, Any]:
    """What a user can notice: the submission, and every setting the adapter keeps."""
    argv, script = adapter.render_submission(drone())
    seen: dict[str, Any] = {"argv": argv, "script": script}
    for name, value in vars(adapter).items():
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            seen[name] = dataclasses.asdict(value)
        elif isinstance(value, bool | int | float | str | Path | list | tuple | dict):
            seen[name] = value
    return seen


@pytest.mark.parametrize("adapter", sorted(SITE_ADAPTERS))
def test_an_adapter_left_to_its_defaults_is_one_given_the_schema_defaults(adapter, tmp_path):
    entry = SITE_ADAPTERS[adapter]
    pilot = tmp_path / "pilot.sh"
    pilot.write_text("#!/bin/sh\necho pilot\n")
    adapter_class = entry.load()

    implicit = snapshot(make_adapter(adapter_class, adapter, minimal_section(str(pilot))))

    explicit_section = minimal_section(str(pilot))
    site_defaults = schema_defaults(entry.schema)
    machine_defaults = schema_defaults(entry.schema.machine_type_schema)
    assert site_defaults or machine_defaults, "nothing to compare"
    explicit_section.update(site_defaults)
    explicit_section["MachineTypeConfiguration"][MACHINE_TYPE].update(machine_defaults)
    explicit = snapshot(make_adapter(adapter_class, adapter, explicit_section))

    assert implicit == explicit
