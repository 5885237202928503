"""``create_composite_pool`` that knows this package's adapters.

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
from collections.abc import Callable
from functools import partial
from importlib import import_module
from typing import Any

from cobald.composite.weighted import WeightedComposite
from cobald.decorator.logger import Logger
from cobald.decorator.standardiser import Standardiser
from cobald.utility.primitives import infinity as inf
from tardis.agents.batchsystemagent import BatchSystemAgent
from tardis.agents.siteagent import SiteAgent
from tardis.configuration.configuration import Configuration
from tardis.resources.poolfactory import create_drone, get_drones_to_restore, load_plugins

from .registry import (
    BATCH_SYSTEMS,
    SITE_ADAPTERS,
    TARDIS_BATCH_SYSTEMS,
    TARDIS_SITE_ADAPTERS,
    load_reference,
)
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


def _factory_pool_class() -> Callable[..., Any]:
    try:
        return load_reference("tardis_sge_dask.pool:ElasticFactoryPool")
    except (ImportError, AttributeError):
        from cobald.composite.factory import FactoryPool

        return FactoryPool


def create_composite_pool(
    configuration: str | None = None, interval: float = 10
) -> WeightedComposite:
    """Build TARDIS's pool hierarchy: one factory pool per site and machine type."""
    validate_daemon_configuration()
    try:
        return _create_composite_pool(configuration, interval)
    except SiteConfigError as err:
        refuse_site_config_error(err)
        raise


def _create_composite_pool(configuration: str | None, interval: float) -> WeightedComposite:
    configuration = Configuration(configuration)
    batch_system = configuration.BatchSystem
    batch_system_agent = BatchSystemAgent(
        batch_system_adapter=batch_system_adapter_class(batch_system.adapter)()
    )
    plugins = load_plugins()
    factory_pool = _factory_pool_class()

    composites = []
    for site in configuration.Sites:
        adapter_class = site_adapter_class(site.adapter)
        site_section = getattr(configuration, site.name, None)
        if site_section is None or "MachineTypes" not in site_section:
            raise SiteConfigError(
                f"tardis.{site.name}.MachineTypes", "missing: list the machine types"
            )
        site_composites = []
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
            site_composites.append(
                Logger(
                    factory_pool(*restored, factory=drone_factory, interval=interval),
                    name=f"{site.name.lower()}_{machine_type.lower()}",
                )
            )
        quota = getattr(site, "quota", inf)
        composites.append(
            Standardiser(
                WeightedComposite(*site_composites, weight="utilisation"),
                maximum=quota if quota is not None and quota >= 0 else inf,
            )
        )
    return WeightedComposite(*composites, weight="utilisation")
