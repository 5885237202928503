"""Every adapter and ``!Tag`` of this package, in one place.

``poolfactory`` resolves ``adapter:`` names here, ``check`` and the daemon's start-up
validation find each section's schema here, ``render`` asks whether an adapter renders a
job script. A new batch system is one dialect module (``sites/<name>.py``, its adapter
class naming its schema), its recorded outputs, and one line in :data:`SITE_ADAPTERS`
(docs/maintainers.md, "Adding a batch system").
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any

from pydantic import BaseModel

from .schema.base import keys
from .schema.batchsystems import DaskBatchSystem, HTCondorOverlayBatchSystem
from .schema.demand import (
    CondorQueueDemandTag,
    DaskDemandControllerTag,
    DaskSchedulerDemandTag,
    StaticDemandTag,
)
from .schema.sites import SiteSection


def load_reference(reference: str) -> Any:
    """``"module:object"`` -> the object."""
    module, _, name = reference.partition(":")
    return getattr(import_module(module), name)


@dataclass(frozen=True)
class SiteAdapterEntry:
    #: the name of ``adapter:`` in ``tardis.Sites``
    name: str
    #: "module:Class" of the TARDIS site adapter; the class names its schema
    reference: str
    #: whether ``render`` can show its submission (command and job script)
    renders_job_script: bool = True

    @property
    def schema(self) -> type[SiteSection]:
        """The ``tardis.<site>`` section's schema (its machine types' schema inside).

        Read from the adapter class, which builds its settings from it: the dialect
        module holds both, and this line stays the only other place naming it.
        """
        schema = getattr(self.load(), "schema", None)
        if not (isinstance(schema, type) and issubclass(schema, SiteSection)):
            raise TypeError(f"{self.reference} names no schema (a SiteSection subclass)")
        return schema

    @property
    def startup_command_required(self) -> bool:
        # pydantic types ``required`` as "bool or not yet known"; a built model knows
        return keys(self.schema.machine_type_schema)["StartupCommand"].required is True

    def load(self) -> type:
        return load_reference(self.reference)


@dataclass(frozen=True)
class SchemaEntry:
    name: str
    reference: str
    schema: type[BaseModel]

    def load(self) -> Any:
        return load_reference(self.reference)


SITE_ADAPTERS: dict[str, SiteAdapterEntry] = {
    entry.name: entry
    for entry in (
        SiteAdapterEntry("SGE", "tardis_sge_dask.sites.sge:SGEAdapter"),
        SiteAdapterEntry("SlurmBatch", "tardis_sge_dask.sites.slurm:SlurmBatchAdapter"),
        SiteAdapterEntry("Local", "tardis_sge_dask.sites.local:LocalAdapter"),
    )
}

BATCH_SYSTEMS: dict[str, SchemaEntry] = {
    entry.name: entry
    for entry in (
        SchemaEntry("Dask", "tardis_sge_dask.batchsystems.dask:DaskAdapter", DaskBatchSystem),
        SchemaEntry(
            "HTCondorOverlay",
            "tardis_sge_dask.batchsystems.htcondor:HTCondorOverlayAdapter",
            HTCondorOverlayBatchSystem,
        ),
    )
}

#: the package's YAML tags (setup.py's cobald.config.yaml_constructors entry points)
TAGS: dict[str, SchemaEntry] = {
    entry.name: entry
    for entry in (
        SchemaEntry(
            "DaskDemandController",
            "tardis_sge_dask.demand.controller:DaskDemandController",
            DaskDemandControllerTag,
        ),
        SchemaEntry(
            "DaskSchedulerDemand",
            "tardis_sge_dask.demand.dask_scheduler:DaskSchedulerDemand",
            DaskSchedulerDemandTag,
        ),
        SchemaEntry(
            "CondorQueueDemand",
            "tardis_sge_dask.demand.htcondor:CondorQueueDemand",
            CondorQueueDemandTag,
        ),
        SchemaEntry("StaticDemand", "tardis_sge_dask.demand.static:StaticDemand", StaticDemandTag),
    )
}

#: TARDIS's own adapters, suggested when a name is misspelt
TARDIS_SITE_ADAPTERS = ("HTCondor", "Slurm", "Moab", "OpenStack", "CloudStack", "FakeSite")
TARDIS_BATCH_SYSTEMS = ("HTCondor", "Slurm", "FakeBatchSystem")
