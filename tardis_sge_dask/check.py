"""``tardis-sge-dask check CONFIG``: find what would break the daemon, before it starts.

The file is read offline (no tag is built, nothing is contacted) and every problem
becomes one line naming the file, the key path and the fix. The sections of this
package's adapters and tags are validated against their schemas (the same validation
the daemon runs at start, :func:`schema_problems`); ``check`` adds the files the daemon's
host must have and, once the structure is sound, builds each site adapter exactly as
the daemon would. The pieces live in :mod:`tardis_sge_dask.checking`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .checking import adapters
from .checking.pipeline import POOL_FACTORY, PipelineCheck
from .checking.problems import Problem, Report
from .checking.tardis import TardisCheck
from .configfile import ConfigFileError, load, plain
from .init import placeholders
from .schema import suggest

TOP_LEVEL = ("pipeline", "logging", "tardis")


def _document(report: Report) -> Any:
    try:
        document = load(report.path)
    except ConfigFileError as err:
        report(
            "(file)",
            str(err).removeprefix(f"{report.path}: "),
            "give the path of a readable YAML file without duplicate keys"
            " (python -m cobald.daemon reads it)",
        )
        return None
    if not isinstance(document, dict):
        report(
            "(file)",
            "the file is not a YAML mapping",
            "start from configs/local.yaml or configs/physnet.yaml",
        )
        return None
    return document


def _validate(report: Report, document: dict) -> TardisCheck | None:
    for key_path, question in placeholders.find(document):
        report(key_path, "placeholder left by tardis-sge-dask init", question)
    for key in document:
        if key not in TOP_LEVEL:
            report(key, "unknown section", suggest(key, TOP_LEVEL))
    if "pipeline" not in document:
        report(
            "pipeline",
            "missing",
            "add a pipeline: a controller (!DaskDemandController) and the pool"
            f" factory (__type__: {POOL_FACTORY})",
        )
    else:
        PipelineCheck(report).pipeline(document["pipeline"])
    if "logging" in document and not isinstance(document["logging"], dict):
        report(
            "logging",
            "expected a logging.config dictConfig mapping",
            "see configs/local.yaml for a working logging section",
        )
    tardis = document.get("tardis")
    if tardis is None:
        report(
            "tardis",
            "missing: no sites, no batch system",
            "add the tardis section (Plugins, BatchSystem, Sites, a section per site)",
        )
        return None
    if not isinstance(tardis, dict):
        report("tardis", "expected a mapping", "see docs/configuration.md")
        return None
    sites = TardisCheck(report)
    sites.tardis(tardis)
    return sites


def check(path: str | Path, check_files: bool = True) -> list[Problem]:
    """Every problem of the configuration file at ``path`` (empty: it is fine).

    ``check_files=False`` skips the files that must exist on the daemon's host (pilot,
    SSH keys, tokens, TLS files, the registry's directory), to check a production
    configuration elsewhere.
    """
    report = Report(str(path), check_files)
    document = _document(report)
    if document is None:
        return report.problems
    sites = _validate(report, document)
    if sites is not None and not report.problems:
        adapters.build(
            report,
            document["tardis"],
            {name: adapter for name, (adapter, _) in sites.sections.items()},
        )
    return report.problems


def schema_problems(path: str | Path) -> list[Problem]:
    """What the daemon refuses at start: the file, its structure and every schema.

    Neither the daemon host's files nor the adapters' own checks: the daemon builds the
    adapters itself right after this, and may run where those files are mounted later.
    Nor the settings only the drone pilot needs: a StartupCommand may be another program.
    """
    report = Report(str(path), check_files=False, pilot_settings=False)
    document = _document(report)
    if document is not None:
        _validate(report, document)
    return report.problems


__all__ = ["Problem", "check", "plain", "schema_problems"]
