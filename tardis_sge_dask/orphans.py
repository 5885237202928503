"""Orphans: jobs of this site's drones that the batch system has and the registry does not.

They appear when the registry was lost, restored from a backup, or written by another
daemon: nothing tracks them, yet they hold nodes until their walltime ends. ``status``
lists them and ``sweep`` removes them.

A job is a drone of a site only by its name, which is the drone uuid TARDIS made:
the site name in lower case, a dash and ten hex digits. The user a job runs as says
nothing (the drone account may run other jobs), so no job is ever picked by its user.

The batch system is listed *before* the registry is read: the daemon records a drone
(TARDIS's RequestState) before it submits its job, so a job seen in the listing is already
in a registry read afterwards, and a sweep next to a running daemon never takes a drone
being submitted for an orphan.
"""

from __future__ import annotations

import asyncio
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tardis.exceptions.executorexceptions import CommandExecutionFailure
from tardis.interfaces.siteadapter import ResourceStatus

from .configfile import Tagged, install_tardis_configuration, load, tardis_section
from .registry import SITE_ADAPTERS
from .sites.batchsite import BatchSiteAdapter, JobInfo
from .sites.removals import Removal as SiteRemoval
from .sites.removals import chunks
from .status import read_registry, registry_file


class OrphanError(ValueError):
    """The configuration names no site whose jobs could be looked at."""


@dataclass(frozen=True)
class Orphan:
    site: str
    job_id: str
    name: str
    state: str


@dataclass
class Survey:
    orphans: list[Orphan] = field(default_factory=list)
    #: site name -> why its jobs could not be listed
    problems: dict[str, str] = field(default_factory=dict)
    #: sites whose jobs were listed
    listed: list[str] = field(default_factory=list)


def drone_name(site: str) -> re.Pattern[str]:
    """The job names of ``site``'s drones (TARDIS's SiteAdapter.drone_uuid)."""
    return re.compile(rf"{re.escape(site.lower())}-[0-9a-f]{{10}}")


def orphans_among(
    jobs: Mapping[str, JobInfo],
    site: str,
    registered: set[str],
    translate: Callable[[str], ResourceStatus | None],
) -> list[Orphan]:
    """Jobs named like ``site``'s drones, not yet ended, whose drone is not registered."""
    pattern = drone_name(site)
    found = []
    for job in jobs.values():
        if not pattern.fullmatch(job.name) or job.name in registered:
            continue
        # SLURM lists ended jobs for MinJobAge; they hold nothing and cannot be removed
        if translate(job.state) is ResourceStatus.Deleted:
            continue
        found.append(Orphan(site, job.job_id, job.name, job.state))
    return sorted(found, key=lambda orphan: (orphan.site, int(orphan.job_id)))


def site_executor(executor: Any) -> Any:
    """The executor a site section names, built as the daemon builds it."""
    from tardis.utilities.executors.shellexecutor import ShellExecutor

    if executor is None:
        return ShellExecutor()
    if isinstance(executor, Tagged) and executor.tag in ("TardisShellExecutor", "ShellExecutor"):
        return ShellExecutor()
    if isinstance(executor, Tagged) and executor.tag in ("TardisSSHExecutor", "SSHExecutor"):
        from tardis.utilities.executors.sshexecutor import SSHExecutor

        return SSHExecutor(**dict(executor.value or {}))
    raise OrphanError(f"executor {executor!r} is neither the shell nor SSH")


def batch_sites(tardis: dict) -> list[tuple[str, str]]:
    """(site, adapter) of every site whose drones are batch jobs."""
    sites = []
    for entry in tardis.get("Sites") or []:
        if not isinstance(entry, dict):
            continue
        known = SITE_ADAPTERS.get(str(entry.get("adapter")))
        if known is not None and issubclass(known.load(), BatchSiteAdapter):
            sites.append((str(entry.get("name")), str(entry["adapter"])))
    return sites


def site_adapter(tardis: dict, site: str, adapter: str) -> BatchSiteAdapter:
    section = tardis.get(site) or {}
    machine_types = section.get("MachineTypes") or []
    if not machine_types:
        raise OrphanError(f"tardis.{site}.MachineTypes is empty")
    adapter_class = SITE_ADAPTERS[adapter].load()
    built = adapter_class(machine_type=machine_types[0], site_name=site)
    built._executor = site_executor(section.get("executor"))
    return built


async def survey(config: str | Path, registry: str | Path | None = None) -> Survey:
    """Every batch site's orphans; a site that cannot be listed is a problem, not a failure."""
    tardis = tardis_section(load(config)) or {}
    db_file = registry or registry_file(config)
    install_tardis_configuration(tardis)
    result = Survey()
    listings: dict[str, tuple[BatchSiteAdapter, dict[str, JobInfo]]] = {}
    for site, adapter_name in batch_sites(tardis):
        try:
            adapter = site_adapter(tardis, site, adapter_name)
            jobs = adapter.parse_listing(await adapter.run(adapter.listing_command()))
        except Exception as err:  # other sites are still worth looking at
            result.problems[site] = _describe(err)
            continue
        listings[site] = (adapter, jobs)
        result.listed.append(site)
    # after the listings, never before (module docstring)
    registered = {row.drone_uuid for row in read_registry(db_file)}
    for site, (adapter, jobs) in listings.items():
        result.orphans += orphans_among(jobs, site, registered, adapter.translate_state)
    return result


@dataclass(frozen=True)
class Removal:
    orphan: Orphan
    outcome: str  # "removed", "already gone" or "failed: why"

    @property
    def failed(self) -> bool:
        return self.outcome.startswith("failed")


async def remove(config: str | Path, orphans: Iterable[Orphan]) -> list[Removal]:
    """Remove the orphans' jobs the way the daemon removes drones' jobs: many per command."""
    tardis = tardis_section(load(config)) or {}
    install_tardis_configuration(tardis)
    adapters = dict(batch_sites(tardis))
    by_site: dict[str, list[Orphan]] = {}
    for orphan in orphans:
        by_site.setdefault(orphan.site, []).append(orphan)
    outcomes: dict[tuple[str, str], str] = {}
    for site, of_site in by_site.items():
        job_ids = list(dict.fromkeys(orphan.job_id for orphan in of_site))
        try:
            adapter = site_adapter(tardis, site, adapters[site])
        except Exception as err:  # the other sites' orphans still get removed
            outcomes.update({(site, job_id): f"failed: {_describe(err)}" for job_id in job_ids})
            continue
        for bulk in chunks(job_ids):
            outcomes.update(
                {(site, job_id): outcome for job_id, outcome in (await _terminate(adapter, bulk))}
            )
    return [Removal(orphan, outcomes[orphan.site, orphan.job_id]) for orphan in orphans]


async def _terminate(adapter: BatchSiteAdapter, job_ids: list[str]) -> list[tuple[str, str]]:
    try:
        said = await adapter.remove_jobs(job_ids)
    except Exception as err:  # the command failed as a whole: each of its ids failed
        return [(job_id, f"failed: {_describe(err)}") for job_id in job_ids]
    return [
        (
            job_id,
            f"failed: {_describe(outcome)}"
            if isinstance(outcome, BaseException)
            else "removed"
            if outcome is SiteRemoval.REMOVED
            else "already gone",
        )
        for job_id, outcome in said.items()
    ]


def _describe(err: BaseException) -> str:
    if isinstance(err, CommandExecutionFailure):
        words = (err.stderr or err.stdout or "").strip().splitlines()
        return f"exit code {err.exit_code}: {words[0][:300] if words else 'no output'}"
    if isinstance(err, TimeoutError):
        return "the command did not answer in time"
    return str(err) or type(err).__name__


def format_orphans(orphans: list[Orphan]) -> str:
    header = ("JOB", "NAME", "SITE", "STATE")
    lines = [(o.job_id, o.name, o.site, o.state) for o in orphans]
    widths = [max(len(item) for item in column) for column in zip(header, *lines, strict=False)]
    return "\n".join(
        "  ".join(item.ljust(width) for item, width in zip(line, widths, strict=True)).rstrip()
        for line in (header, *lines)
    )


def sweep_command(config: str | Path, registry: str | Path | None) -> str:
    argv = ["tardis-sge-dask", "sweep", str(config)]
    if registry:
        argv += ["--registry", str(registry)]
    return shlex.join(argv)


def run_survey(config: str | Path, registry: str | Path | None = None) -> Survey:
    return asyncio.run(survey(config, registry))


def run_removal(config: str | Path, orphans: list[Orphan]) -> list[Removal]:
    return asyncio.run(remove(config, orphans))
