"""One schema per adapter and per ``!Tag`` of this package: keys, defaults, help, rules.

The adapters build their settings from it, ``check`` and the daemon (at start) validate
against it, and a test holds docs/configuration.md to it. Which schema belongs to which
adapter or tag is :mod:`tardis_sge_dask.registry`.
"""

from .validate import Finding, suggest, validate

__all__ = ["Finding", "suggest", "validate"]
