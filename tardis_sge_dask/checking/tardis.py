"""The ``tardis`` section: Plugins, the overlay batch system, the sites and their sections.

Every section of this package's adapters is validated against its schema in the
registry; TARDIS's own adapters are left to TARDIS (only their ``Sites`` entry is
checked, with TARDIS's own model).
"""

from __future__ import annotations

from typing import Any

from ..configfile import Tagged
from ..registry import (
    BATCH_SYSTEMS,
    SITE_ADAPTERS,
    TARDIS_BATCH_SYSTEMS,
    TARDIS_SITE_ADAPTERS,
)
from ..schema import suggest, validate
from ..schema.entries import SiteEntry
from ..schema.sites import LocalSection, SiteSection
from ..sites.settings import SiteConfigError
from . import hostfiles
from .problems import Report


class TardisCheck:
    def __init__(self, report: Report):
        self.report = report
        #: site name -> (adapter name, validated section) of this package's sites
        self.sections: dict[str, tuple[str, SiteSection]] = {}

    def tardis(self, tardis: dict) -> None:
        site_names = {
            str(site.get("name"))
            for site in tardis.get("Sites") or []
            if isinstance(site, dict) and site.get("name")
        }
        for key in tardis:
            if key not in ("Plugins", "BatchSystem", "Sites") and key not in site_names:
                self.report(
                    f"tardis.{key}",
                    "unknown key: neither Plugins, BatchSystem, Sites nor the name of a site",
                    "name the section after a site of tardis.Sites, or remove it",
                )
        self.plugins(tardis.get("Plugins"))
        self.batch_system(tardis.get("BatchSystem"))
        sites = tardis.get("Sites")
        if not isinstance(sites, list) or not sites:
            self.report(
                "tardis.Sites",
                "missing or empty",
                "list the sites: Sites: [{name: Local, adapter: Local, quota: 2}]",
            )
            return
        for index, site in enumerate(sites):
            self.site(index, site, tardis)

    def plugins(self, plugins: Any) -> None:
        if plugins is None:
            return
        if not isinstance(plugins, dict):
            self.report("tardis.Plugins", "expected a mapping", "Plugins: {SqliteRegistry: {...}}")
            return
        registry = plugins.get("SqliteRegistry")
        if registry is None:
            return
        if not isinstance(registry, dict) or not registry.get("db_file"):
            self.report(
                "tardis.Plugins.SqliteRegistry.db_file",
                "missing",
                "give the drone registry's file: db_file: /var/lib/tardis/drones.db",
            )
            return
        hostfiles.registry_directory(self.report, registry["db_file"])

    def batch_system(self, batch_system: Any) -> None:
        if not isinstance(batch_system, dict) or "adapter" not in batch_system:
            self.report(
                "tardis.BatchSystem.adapter",
                "missing",
                "the overlay: BatchSystem: {adapter: Dask, scheduler_address: ...}"
                " or {adapter: HTCondorOverlay, ...}",
            )
            return
        name = str(batch_system["adapter"])
        entry = BATCH_SYSTEMS.get(name)
        if entry is None:
            if name not in TARDIS_BATCH_SYSTEMS:
                self.report(
                    "tardis.BatchSystem.adapter",
                    f"unknown batch system adapter {name!r}",
                    suggest(name, [*BATCH_SYSTEMS, *TARDIS_BATCH_SYSTEMS]),
                )
            return
        _, findings = validate(entry.schema, batch_system, "tardis.BatchSystem")
        self.report.findings(findings)
        hostfiles.security(self.report, batch_system.get("security"), "tardis.BatchSystem.security")
        if isinstance(batch_system.get("executor"), Tagged):
            hostfiles.executor(self.report, batch_system["executor"], "tardis.BatchSystem.executor")

    def site(self, index: int, site: Any, tardis: dict) -> None:
        key_path = f"tardis.Sites[{index}]"
        if not isinstance(site, dict):
            self.report(key_path, "expected a mapping", "{name: ..., adapter: ..., quota: ...}")
            return
        _, findings = validate(SiteEntry, site, key_path)
        self.report.findings(findings)
        broken = {finding.key_path for finding in findings}
        if {f"{key_path}.name", f"{key_path}.adapter"} & broken:
            return
        if not site.get("name") or not site.get("adapter"):
            return
        name, adapter = str(site["name"]), str(site["adapter"])
        entry = SITE_ADAPTERS.get(adapter)
        if entry is None:
            if adapter not in TARDIS_SITE_ADAPTERS and not _tardis_adapter(adapter):
                self.report(
                    f"{key_path}.adapter",
                    f"unknown site adapter {adapter!r}",
                    suggest(adapter, [*SITE_ADAPTERS, *TARDIS_SITE_ADAPTERS]),
                )
            return
        section = tardis.get(name)
        if not isinstance(section, dict):
            self.report(
                f"tardis.{name}",
                f"missing: site {name} has no section",
                f"add tardis.{name} with MachineTypes, MachineMetaData and"
                " MachineTypeConfiguration",
            )
            return
        model, findings = validate(entry.schema, section, f"tardis.{name}", f"adapter {adapter}")
        self.report.findings(findings)
        if model is None:
            return
        self.sections[name] = (adapter, model)
        self.site_host_files(name, section, model)
        self.quota(key_path, site.get("quota"), model)

    def site_host_files(self, name: str, section: dict, model: SiteSection) -> None:
        prefix = f"tardis.{name}"
        hostfiles.executor(self.report, section.get("executor"), f"{prefix}.executor")
        for machine_type in model.MachineTypes:
            config = model.machine_type(machine_type)
            if config is None:
                continue
            where = f"{prefix}.MachineTypeConfiguration.{machine_type}"
            if config.StartupCommand is not None:
                hostfiles.pilot(self.report, config.StartupCommand, f"{where}.StartupCommand")
            token = {**model.JobEnvironment, **config.JobEnvironment}.get("PILOT_TOKEN_FILE")
            if token and isinstance(model, LocalSection):
                own = "PILOT_TOKEN_FILE" in config.JobEnvironment
                hostfiles.local_token(
                    self.report,
                    token,
                    f"{where if own else prefix}.JobEnvironment.PILOT_TOKEN_FILE",
                )

    def quota(self, key_path: str, quota: Any, model: SiteSection) -> None:
        if not isinstance(quota, int) or quota <= 0:
            return
        cores = [(name, model.cores(name)) for name in model.MachineTypes if model.cores(name)]
        if not cores:
            return
        smallest = min(cores, key=lambda item: item[1] or 0)
        if quota < (smallest[1] or 0):
            self.report(
                f"{key_path}.quota",
                f"{quota} cores is less than one drone of {smallest[0]}"
                f" ({smallest[1]} cores): no drone can ever start",
                f"raise the quota to at least {smallest[1]}",
            )


def _tardis_adapter(name: str) -> bool:
    from ..poolfactory import site_adapter_class

    try:
        site_adapter_class(name)
    except SiteConfigError:
        return False
    return True
