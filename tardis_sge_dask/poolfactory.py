"""``create_composite_pool`` that knows this package's adapters and builds its site pool.

One :class:`~.sitepool.SitePool` above one :class:`~.pool.ElasticFactoryPool` per site
and machine type (each behind a ``Logger`` named ``<site>_<type>``), sites in the order of
``tardis.Sites`` (the order of preference), each with its ``quota``. The package's pools
are imported like any other module: a broken install fails the daemon's start instead of
silently running TARDIS's stock pool, which cannot take per-site demand.

TARDIS resolves ``adapter: X`` by importing ``tardis.adapters.sites.x`` and has no plugin
hook. This factory resolves the package's own adapter names first (from
:mod:`tardis_sge_dask.registry`) and falls back to TARDIS's import rule for everything
else, so ``adapter: SGE`` and ``adapter: Slurm`` (TARDIS's own) work side by side in one
configuration::

    pipeline:
      - !DaskDemandController {...}
      - __type__: tardis_sge_dask.poolfactory.create_composite_pool
        interval: 5        # seconds between two adjustments of the drone count
"""

from __future__ import annotations

import logging
import math
from functools import partial
from importlib import import_module

from cobald.decorator.logger import Logger
from tardis.agents.batchsystemagent import BatchSystemAgent
from tardis.agents.siteagent import SiteAgent
from tardis.configuration.configuration import Configuration
from tardis.resources.poolfactory import create_drone, get_drones_to_restore

from .demand.packing import MachineShape
from .pool import ElasticFactoryPool
from .registry import (
    BATCH_SYSTEMS,
    SITE_ADAPTERS,
    TARDIS_BATCH_SYSTEMS,
    TARDIS_SITE_ADAPTERS,
)
from .registry_plugin import load_plugins
from .sitepool import MachineTypeSlot, SitePool
from .sites.settings import SiteConfigError
from .startup import refuse_site_config_error, validate_daemon_configuration

logger = logging.getLogger("cobald.runtime.tardis_sge_dask.poolfactory")


def site_adapter_class(name: str) -> type:
    """The class behind ``adapter: <name>`` of a site."""
    if name in SITE_ADAPTERS:
        return SITE_ADAPTERS[name].load()
    try:
        return getattr(import_module(f"tardis.adapters.sites.{name.lower()}"), f"{name}Adapter")
    except (ImportError, AttributeError):
        known = sorted({*SITE_ADAPTERS, *TARDIS_SITE_ADAPTERS})
        raise SiteConfigError(
            "tardis.Sites[].adapter", f"unknown site adapter {name!r}; known: {', '.join(known)}"
        ) from None


def batch_system_adapter_class(name: str) -> type:
    """The class behind ``BatchSystem: adapter: <name>``."""
    if name in BATCH_SYSTEMS:
        return BATCH_SYSTEMS[name].load()
    try:
        return getattr(
            import_module(f"tardis.adapters.batchsystems.{name.lower()}"), f"{name}Adapter"
        )
    except (ImportError, AttributeError):
        known = sorted({*BATCH_SYSTEMS, *TARDIS_BATCH_SYSTEMS})
        raise SiteConfigError(
            "tardis.BatchSystem.adapter",
            f"unknown batch system adapter {name!r}; known: {', '.join(known)}",
        ) from None


def create_composite_pool(configuration: str | None = None, interval: float = 10) -> SitePool:
    """Build TARDIS's pool hierarchy: one factory pool per site and machine type."""
    validate_daemon_configuration()
    try:
        return _create_composite_pool(configuration, interval)
    except SiteConfigError as err:
        refuse_site_config_error(err)
        raise


def _create_composite_pool(configuration_file: str | None, interval: float) -> SitePool:
    configuration = Configuration(configuration_file)
    batch_system = configuration.BatchSystem
    batch_system_agent = BatchSystemAgent(
        batch_system_adapter=batch_system_adapter_class(batch_system.adapter)()
    )
    plugins = load_plugins()  # TARDIS's, with a registry surviving a reused job id

    slots: list[MachineTypeSlot] = []
    quotas: dict[str, float] = {}
    for site in configuration.Sites:
        adapter_class = site_adapter_class(site.adapter)
        site_section = getattr(configuration, site.name, None)
        if site_section is None or "MachineTypes" not in site_section:
            raise SiteConfigError(
                f"tardis.{site.name}.MachineTypes", "missing: list the machine types"
            )
        for machine_type in site_section.MachineTypes:
            site_agent = SiteAgent(adapter_class(machine_type=machine_type, site_name=site.name))
            restored = [
                create_drone(
                    site_agent=site_agent,
                    batch_system_agent=batch_system_agent,
                    plugins=plugins.values(),
                    **attributes,
                )
                for attributes in get_drones_to_restore(plugins, site, machine_type)
            ]
            if restored:
                logger.info(
                    "%s/%s: restored %d drone(s) from the registry: %s",
                    site.name,
                    machine_type,
                    len(restored),
                    ", ".join(drone.resource_attributes.drone_uuid for drone in restored),
                )
            drone_factory = partial(
                create_drone,
                site_agent=site_agent,
                batch_system_agent=batch_system_agent,
                plugins=plugins.values(),
            )
            pool = ElasticFactoryPool(*restored, factory=drone_factory, interval=interval)
            meta = pool.machine_meta_data
            if not meta:
                raise SiteConfigError(
                    f"tardis.{site.name}.MachineMetaData.{machine_type}",
                    "missing: give Cores, Memory (GB) and Disk (GB)",
                )
            slots.append(
                MachineTypeSlot(
                    site=site.name,
                    pool=pool,
                    target=Logger(pool, name=f"{site.name.lower()}_{machine_type.lower()}"),
                    shape=MachineShape.from_meta_data(machine_type, meta),
                )
            )
        quota = getattr(site, "quota", None)
        # TARDIS's model: -1 (or nothing) is no limit
        quotas[site.name] = quota if quota is not None and quota >= 0 else math.inf
    return SitePool(*slots, quotas=quotas)
