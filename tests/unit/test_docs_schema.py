"""docs/configuration.md and docs/pilot.md against the schemas: every key of a schema is in
its table with its default, and every key of a table is in the schema. Adding a key is one
edit to the schema plus its line here in the docs; this test fails until both agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from tardis_sge_dask.registry import BATCH_SYSTEMS, SITE_ADAPTERS, TAGS
from tardis_sge_dask.schema.base import documented_default, keys
from tardis_sge_dask.schema.entries import SiteEntry
from tardis_sge_dask.schema.pilot import PilotEnvironment
from tardis_sge_dask.schema.sites import MachineMetaData

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"

SITE_SHARED = "#### Site keys of every adapter of this package"
BATCH_SITE = "#### Site keys of `adapter: SGE` and `adapter: SlurmBatch`"
LOCAL_SITE = "#### Site keys of `adapter: Local`"
MACHINE_SHARED = "#### Machine-type keys of every adapter"
BATCH_MACHINE = "#### Machine-type keys of `adapter: SGE` and `adapter: SlurmBatch`"

#: each schema and the tables (by the line before them) that together document it
CONFIGURATION: list[tuple[type[BaseModel], list[str]]] = [
    (SiteEntry, ["### `tardis.Sites` (a list)"]),
    (MachineMetaData, ["#### `MachineMetaData.<type>`"]),
    (SITE_ADAPTERS["SGE"].schema, [SITE_SHARED, BATCH_SITE]),
    (SITE_ADAPTERS["SlurmBatch"].schema, [SITE_SHARED, BATCH_SITE]),
    (SITE_ADAPTERS["Local"].schema, [SITE_SHARED, LOCAL_SITE]),
    (
        SITE_ADAPTERS["SGE"].schema.machine_type_schema,
        [MACHINE_SHARED, BATCH_MACHINE, "#### Machine-type keys of `adapter: SGE` — see"],
    ),
    (
        SITE_ADAPTERS["SlurmBatch"].schema.machine_type_schema,
        [MACHINE_SHARED, BATCH_MACHINE, "#### Machine-type keys of `adapter: SlurmBatch` — see"],
    ),
    (
        SITE_ADAPTERS["Local"].schema.machine_type_schema,
        [MACHINE_SHARED, "#### Machine-type keys of `adapter: Local`"],
    ),
    (BATCH_SYSTEMS["Dask"].schema, ["`adapter: Dask` (direct mode"]),
    (BATCH_SYSTEMS["HTCondorOverlay"].schema, ["`adapter: HTCondorOverlay` (this package)"]),
    *[(entry.schema, [f"#### `!{name}`"]) for name, entry in TAGS.items()],
]


def table_after(text: str, marker: str) -> dict[str, str]:
    """key -> default cell of the first table after the line starting with ``marker``."""
    lines = text.splitlines()
    starts = [index for index, line in enumerate(lines) if line.startswith(marker)]
    assert len(starts) == 1, f"{marker!r} found {len(starts)} times"
    rows: dict[str, str] = {}
    index = starts[0] + 1
    while index < len(lines) and not lines[index].startswith("|"):
        index += 1
    for line in lines[index + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        for key in re.findall(r"`([^`]+)`", cells[0]):
            rows[key] = cells[1]
    return rows


@pytest.mark.parametrize(
    ("schema", "markers"), CONFIGURATION, ids=[schema.__name__ for schema, _ in CONFIGURATION]
)
def test_configuration_md_documents_every_key_with_its_default(schema, markers):
    text = (DOCS / "configuration.md").read_text()
    documented: dict[str, str] = {}
    for marker in markers:
        documented.update(table_after(text, marker))
    expected = {key: documented_default(schema, key) for key in keys(schema)}
    assert documented == expected


def test_pilot_md_documents_every_pilot_setting_with_its_default():
    text = (DOCS / "pilot.md").read_text()
    documented = {
        key: default
        for marker in ("Written by the site adapter", "From the machine type's `JobEnvironment`")
        for key, default in table_after(text, marker).items()
    }
    expected = {key: documented_default(PilotEnvironment, key) for key in keys(PilotEnvironment)}
    assert documented == expected


def test_every_registered_site_adapter_is_documented():
    listed = {schema for schema, _ in CONFIGURATION}
    for name, entry in SITE_ADAPTERS.items():
        assert entry.schema in listed, f"adapter {name}: its site keys are not in the list"
        assert entry.schema.machine_type_schema in listed, f"adapter {name}: machine-type keys"
