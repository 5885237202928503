"""The adapters' own view: each site adapter built from the file as the daemon builds it.

Only ``check`` does this (the daemon builds them anyway right after its own validation):
whatever an adapter rejects beyond the schema is reported the same way.
"""

from __future__ import annotations

from ..configfile import install_tardis_configuration
from ..registry import SITE_ADAPTERS
from ..sites.settings import SiteConfigError
from .problems import Report


def build(report: Report, tardis: dict, sites: dict[str, str]) -> None:
    """``sites``: site name -> adapter name, for the sites of this package's adapters."""
    try:
        install_tardis_configuration(tardis)
    except Exception as err:  # report, do not crash the checker
        report("tardis", f"TARDIS rejects the section: {err}", "see docs/configuration.md")
        return
    for site_name, adapter in sites.items():
        adapter_class = SITE_ADAPTERS[adapter].load()
        for machine_type in tardis[site_name]["MachineTypes"]:
            try:
                adapter_class(machine_type=str(machine_type), site_name=site_name)
            except SiteConfigError as err:
                report(
                    f"tardis.{err.key_path}", err.problem, "see docs/configuration.md for the key"
                )
            except Exception as err:
                report(
                    f"tardis.{site_name}.MachineTypeConfiguration.{machine_type}",
                    f"adapter {adapter} rejects it: {err}",
                    "see docs/configuration.md",
                )
