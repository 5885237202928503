"""``tardis-sge-dask check CONFIG``: find what would break the daemon, before it starts.

The daemon reports a broken key as a traceback, often only when the first drone is
made. Here the file is read offline (no tag is built, nothing is contacted) and every
problem becomes one line naming the file, the key path and the fix. Once the structure
is sound, each site adapter is built from the file exactly as the daemon would build it,
so whatever the adapter itself rejects (a malformed Walltime, a missing parallel
environment) is reported the same way.
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from numbers import Real
from pathlib import Path
from typing import Any

from .configfile import ConfigFileError, Tagged, install_tardis_configuration, load, plain
from .sites.settings import SiteConfigError

POOL_FACTORY = "tardis_sge_dask.poolfactory.create_composite_pool"
TOP_LEVEL = ("pipeline", "logging", "tardis")
SITE_ENTRY_KEYS = ("name", "adapter", "quota", "drone_minimum_lifetime", "drone_heartbeat_interval")
META_KEYS = ("Cores", "Memory", "Disk")

# keys each of this package's adapters reads; TARDIS's own adapters are not checked this deep
_BATCH_SITE_KEYS = ("bulk_size", "bulk_delay", "command_timeout", "accounting_grace")
_COMMON_SITE_KEYS = (
    "executor",
    "JobEnvironment",
    "MachineTypes",
    "MachineMetaData",
    "MachineTypeConfiguration",
)
_COMMON_MACHINE_KEYS = (
    "StartupCommand",
    "Walltime",
    "ExtraOptions",
    "JobEnvironment",
    "LogDirectory",
)
SITE_KEYS: dict[str, tuple[str, ...]] = {
    "SGE": _COMMON_SITE_KEYS + _BATCH_SITE_KEYS,
    "SlurmBatch": _COMMON_SITE_KEYS + _BATCH_SITE_KEYS,
    "Local": _COMMON_SITE_KEYS + ("MaxCores", "StateDirectory", "StopGrace", "TerminateGrace"),
}
MACHINE_TYPE_KEYS: dict[str, tuple[str, ...]] = {
    "SGE": _COMMON_MACHINE_KEYS
    + ("Queue", "ParallelEnvironment", "MemoryResource", "Project", "Notify"),
    "SlurmBatch": _COMMON_MACHINE_KEYS
    + (
        "Partition",
        "Account",
        "QOS",
        "StopSignal",
        "StopGrace",
        "WarningTime",
        "RequestMemory",
        "Export",
        "JobPath",
    ),
    "Local": _COMMON_MACHINE_KEYS,
}
BATCH_SYSTEM_KEYS: dict[str, tuple[str, ...]] = {
    "Dask": ("adapter", "scheduler_address", "max_age", "timeout", "security"),
    "HTCondorOverlay": ("adapter", "max_age", "ratios", "options", "executor", "missing_grace"),
}
SECURITY_FILES = ("tls_ca_file", "tls_client_cert", "tls_client_key", "tls_cert", "tls_key")
#: executor tags and the keys that name files on the daemon host
EXECUTOR_TAGS = (
    "TardisShellExecutor",
    "TardisSSHExecutor",
    "TardisDupingSSHExecutor",
    "ShellExecutor",
    "SSHExecutor",
    "DupingSSHExecutor",
)


@dataclass(frozen=True)
class Problem:
    file: str
    key_path: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key_path}: {self.problem}. Fix: {self.fix}"


def _suggest(name: str, known: Iterator[str] | tuple[str, ...] | list[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
    listing = ", ".join(known)
    return f"did you mean {close[0]!r}? Known: {listing}" if close else f"known: {listing}"


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _readable(path: str) -> str | None:
    """Why ``path`` is not a readable file, or None."""
    expanded = os.path.expanduser(str(path))
    if not os.path.exists(expanded):
        return "does not exist"
    if not os.path.isfile(expanded):
        return "is not a file"
    if not os.access(expanded, os.R_OK):
        return "is not readable by this user"
    return None


def yaml_tags() -> dict[str, str]:
    """Every ``!Tag`` COBalD knows: tag name -> "module:object"."""
    return {ep.name: ep.value for ep in entry_points(group="cobald.config.yaml_constructors")}


def _load_reference(reference: str) -> Any:
    module, _, name = reference.replace(":", ".").rpartition(".")
    return getattr(import_module(module), name)


class Checker:
    def __init__(self, path: str | Path, check_files: bool = True):
        self.path = str(path)
        self.check_files = check_files
        self.problems: list[Problem] = []
        self.tags = yaml_tags()

    def report(self, key_path: str, problem: str, fix: str) -> None:
        problem_line = Problem(self.path, key_path, problem, fix)
        # a site-wide gap is found once per machine type; say it once
        if problem_line not in self.problems:
            self.problems.append(problem_line)

    def report_file(self, key_path: str, problem: str, fix: str) -> None:
        """A file on this host is missing: a problem only where the daemon runs."""
        if self.check_files:
            self.report(key_path, problem, fix)

    # ------------------------------------------------------------------ entry
    def run(self) -> list[Problem]:
        try:
            document = load(self.path)
        except ConfigFileError as err:
            self.report(
                "(file)",
                str(err).removeprefix(f"{self.path}: "),
                "give the path of a readable YAML file (python -m cobald.daemon reads it)",
            )
            return self.problems
        if not isinstance(document, dict):
            self.report(
                "(file)",
                "the file is not a YAML mapping",
                "start from configs/local.yaml or configs/physnet.yaml",
            )
            return self.problems
        for key in document:
            if key not in TOP_LEVEL:
                self.report(key, "unknown section", _suggest(key, TOP_LEVEL))
        if "pipeline" not in document:
            self.report(
                "pipeline",
                "missing",
                "add a pipeline: a controller (!DaskDemandController) and the pool"
                f" factory (__type__: {POOL_FACTORY})",
            )
        else:
            self.check_pipeline(document["pipeline"])
        if "logging" in document and not isinstance(document["logging"], dict):
            self.report(
                "logging",
                "expected a logging.config dictConfig mapping",
                "see configs/local.yaml for a working logging section",
            )
        tardis = document.get("tardis")
        if tardis is None:
            self.report(
                "tardis",
                "missing: no sites, no batch system",
                "add the tardis section (Plugins, BatchSystem, Sites, a section per site)",
            )
        elif not isinstance(tardis, dict):
            self.report("tardis", "expected a mapping", "see docs/configuration.md")
        else:
            self.check_tardis(tardis)
        return self.problems

    # --------------------------------------------------------------- pipeline
    def check_pipeline(self, pipeline: Any) -> None:
        if not isinstance(pipeline, list) or len(pipeline) < 2:
            self.report(
                "pipeline",
                "expected a list: a controller first, the pool factory last",
                f"pipeline: [!DaskDemandController {{...}}, {{__type__: {POOL_FACTORY}}}]",
            )
            return
        for index, element in enumerate(pipeline):
            key_path = f"pipeline[{index}]"
            if isinstance(element, Tagged):
                self.check_tagged(element, key_path)
            elif isinstance(element, dict) and "__type__" in element:
                self.check_type_reference(element, key_path)
            else:
                self.report(
                    key_path,
                    f"neither a !Tag nor a __type__ mapping: {element!r}",
                    "write a controller/decorator as !Tag {...} or a factory as"
                    " {__type__: module.function}",
                )
        last = pipeline[-1]
        if isinstance(last, dict) and last.get("__type__") not in (None, POOL_FACTORY):
            if str(last.get("__type__")).startswith("tardis.resources.poolfactory"):
                self.report(
                    f"pipeline[{len(pipeline) - 1}].__type__",
                    "TARDIS's own pool factory does not know adapter: SGE/SlurmBatch/Local",
                    f"use __type__: {POOL_FACTORY}",
                )

    def check_tagged(self, element: Tagged, key_path: str) -> Callable | None:
        if element.tag not in self.tags:
            self.report(
                key_path, f"unknown tag !{element.tag}", _suggest(element.tag, sorted(self.tags))
            )
            return None
        try:
            target = _load_reference(self.tags[element.tag])
        except (ImportError, AttributeError) as err:
            self.report(
                key_path,
                f"!{element.tag} cannot be imported ({err})",
                "reinstall the package: pip install -e .",
            )
            return None
        self.check_arguments(
            target, element.value, f"{key_path} (!{element.tag})", skip=("target",)
        )
        return target

    def check_type_reference(self, element: dict, key_path: str) -> None:
        reference = str(element["__type__"])
        try:
            target = _load_reference(reference)
        except (ImportError, AttributeError, ValueError):
            self.report(
                f"{key_path}.__type__",
                f"{reference!r} cannot be imported",
                f"use __type__: {POOL_FACTORY}",
            )
            return
        arguments = {key: value for key, value in element.items() if key != "__type__"}
        self.check_arguments(target, arguments, key_path, skip=("configuration",))

    def check_arguments(
        self, target: Callable, value: Any, key_path: str, skip: tuple[str, ...] = ()
    ) -> None:
        if value is None or value == "":
            value = {}
        if not isinstance(value, dict):
            self.report(
                key_path,
                f"expected a mapping of keyword arguments, got {value!r}",
                "write the keys as a mapping: !Tag {key: value}",
            )
            return
        try:
            # a class's own __init__: decorators such as cobald's @service wrap __new__
            signature = inspect.signature(target.__init__ if inspect.isclass(target) else target)
        except (TypeError, ValueError):
            return
        parameters = {
            name: parameter
            for name, parameter in signature.parameters.items()
            if name not in skip
            and name != "self"
            and parameter.kind not in (parameter.VAR_POSITIONAL,)
        }
        takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
        named = [name for name, p in parameters.items() if p.kind is not p.VAR_KEYWORD]
        for key, item in value.items():
            if key not in parameters and not takes_any:
                self.report(f"{key_path}.{key}", "unknown key", _suggest(key, named))
                continue
            parameter = parameters.get(key)
            if parameter is not None:
                self.check_value_type(parameter, item, f"{key_path}.{key}")
        for name, parameter in parameters.items():
            if (
                parameter.default is parameter.empty
                and parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL)
                and name not in value
                and name != "clock"
            ):
                self.report(
                    f"{key_path}.{name}",
                    "missing (required)",
                    f"add {name}: ... (docs/configuration.md)",
                )

    def check_value_type(self, parameter: inspect.Parameter, item: Any, key_path: str) -> None:
        annotation = str(parameter.annotation)
        if isinstance(item, Tagged):
            self.check_tagged(item, key_path)
            if item.tag in EXECUTOR_TAGS:
                self.check_executor(item, key_path)
            if item.tag == "DaskSchedulerDemand":
                self.check_security(item.get("security"), f"{key_path}.security")
            return
        wants_number = ("float" in annotation or "int" in annotation) and "str" not in annotation
        if wants_number and item is not None and not _is_number(item):
            self.report(key_path, f"expected a number, got {item!r}", "write a plain number")
        elif wants_number and _is_number(item) and item < 0:
            self.report(key_path, f"must not be negative, got {item!r}", "write a number >= 0")

    # ----------------------------------------------------------------- tardis
    def check_tardis(self, tardis: dict) -> None:
        for key in tardis:
            if key not in ("Plugins", "BatchSystem", "Sites") and not any(
                isinstance(site, dict) and site.get("name") == key
                for site in tardis.get("Sites") or []
            ):
                self.report(
                    f"tardis.{key}",
                    "unknown key: neither Plugins, BatchSystem, Sites nor the name of a site",
                    "name the section after a site of tardis.Sites, or remove it",
                )
        self.check_plugins(tardis.get("Plugins"))
        self.check_batch_system(tardis.get("BatchSystem"))
        sites = tardis.get("Sites")
        if not isinstance(sites, list) or not sites:
            self.report(
                "tardis.Sites",
                "missing or empty",
                "list the sites: Sites: [{name: Local, adapter: Local, quota: 2}]",
            )
            return
        for index, site in enumerate(sites):
            self.check_site(index, site, tardis)
        if not self.problems:
            self.build_adapters(tardis)

    def check_plugins(self, plugins: Any) -> None:
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
        directory = os.path.dirname(os.path.abspath(os.path.expanduser(registry["db_file"])))
        if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
            self.report_file(
                "tardis.Plugins.SqliteRegistry.db_file",
                f"directory {directory} does not exist or is not writable",
                "create it for the daemon's user, or point db_file elsewhere",
            )

    def check_batch_system(self, batch_system: Any) -> None:
        from .poolfactory import batch_system_adapter_class

        if not isinstance(batch_system, dict) or "adapter" not in batch_system:
            self.report(
                "tardis.BatchSystem.adapter",
                "missing",
                "the overlay: BatchSystem: {adapter: Dask, scheduler_address: ...}"
                " or {adapter: HTCondorOverlay, ...}",
            )
            return
        name = batch_system["adapter"]
        try:
            batch_system_adapter_class(str(name))
        except SiteConfigError:
            self.report(
                "tardis.BatchSystem.adapter",
                f"unknown batch system adapter {name!r}",
                _suggest(name, ["Dask", "HTCondorOverlay", "HTCondor", "Slurm", "FakeBatchSystem"]),
            )
            return
        known = BATCH_SYSTEM_KEYS.get(name)
        if known is None:
            return
        for key in batch_system:
            if key not in known:
                self.report(f"tardis.BatchSystem.{key}", "unknown key", _suggest(key, known))
        if name == "Dask":
            address = batch_system.get("scheduler_address")
            if not isinstance(address, str) or "://" not in address:
                self.report(
                    "tardis.BatchSystem.scheduler_address",
                    f"missing or not an address: {address!r}",
                    "scheduler_address: tcp://host:8786 (or tls://...)",
                )
            for key in ("max_age", "timeout"):
                if key in batch_system and not _is_number(batch_system[key]):
                    self.report(
                        f"tardis.BatchSystem.{key}",
                        f"expected a number, got {batch_system[key]!r}",
                        "write a plain number (max_age in minutes, timeout in seconds)",
                    )
            self.check_security(batch_system.get("security"), "tardis.BatchSystem.security")

    def check_security(self, security: Any, key_path: str) -> None:
        if not isinstance(security, dict):
            return
        for key in SECURITY_FILES:
            if key in security:
                why = _readable(security[key])
                if why:
                    self.report_file(
                        f"{key_path}.{key}",
                        f"TLS file {security[key]} {why}",
                        "copy the certificate/key there, readable by the daemon's user",
                    )

    def check_executor(self, executor: Tagged, key_path: str) -> None:
        if "SSH" not in executor.tag:
            return
        value = executor.value if isinstance(executor.value, dict) else {}
        if not value.get("host"):
            self.report(f"{key_path}.host", "missing", "host: the submit host to reach by SSH")
        keys = value.get("client_keys") or []
        if isinstance(keys, str):
            keys = [keys]
        for index, key in enumerate(keys):
            why = _readable(key)
            if why:
                self.report_file(
                    f"{key_path}.client_keys[{index}]",
                    f"SSH key {key} {why}",
                    "create the key (ssh-keygen -t ed25519) readable only by the daemon's"
                    " user, and install its .pub on the submit host",
                )
        known_hosts = value.get("known_hosts")
        if isinstance(known_hosts, str) and _readable(known_hosts):
            self.report_file(
                f"{key_path}.known_hosts",
                f"known_hosts file {known_hosts} {_readable(known_hosts)}",
                "ssh-keyscan the submit host into that file",
            )

    def check_site(self, index: int, site: Any, tardis: dict) -> None:
        from .poolfactory import site_adapter_class

        key_path = f"tardis.Sites[{index}]"
        if not isinstance(site, dict):
            self.report(key_path, "expected a mapping", "{name: ..., adapter: ..., quota: ...}")
            return
        for key in site:
            if key not in SITE_ENTRY_KEYS:
                self.report(f"{key_path}.{key}", "unknown key", _suggest(key, SITE_ENTRY_KEYS))
        for key in ("name", "adapter"):
            if not site.get(key):
                self.report(f"{key_path}.{key}", "missing", f"every site needs a {key}")
        if not site.get("name") or not site.get("adapter"):
            return
        name, adapter = str(site["name"]), str(site["adapter"])
        try:
            site_adapter_class(adapter)
        except SiteConfigError:
            self.report(
                f"{key_path}.adapter",
                f"unknown site adapter {adapter!r}",
                _suggest(adapter, ["SGE", "SlurmBatch", "Local", "HTCondor", "Slurm"]),
            )
            return
        for key in ("drone_heartbeat_interval", "drone_minimum_lifetime"):
            if (
                key in site
                and site[key] is not None
                and (not isinstance(site[key], int) or isinstance(site[key], bool) or site[key] < 0)
            ):
                self.report(
                    f"{key_path}.{key}",
                    f"expected whole seconds, got {site[key]!r}",
                    "write a whole number of seconds",
                )
        section = tardis.get(name)
        if not isinstance(section, dict):
            self.report(
                f"tardis.{name}",
                f"missing: site {name} has no section",
                f"add tardis.{name} with MachineTypes, MachineMetaData and"
                " MachineTypeConfiguration",
            )
            return
        self.check_site_section(name, adapter, section)
        quota = site.get("quota")
        if quota is not None:
            if not isinstance(quota, int) or isinstance(quota, bool) or quota == 0:
                self.report(
                    f"{key_path}.quota",
                    f"expected a whole number of cores (not 0), got {quota!r}",
                    "quota: cores all drones of the site may hold;"
                    " leave it out (or -1) for no limit",
                )
            elif quota > 0:
                smallest = self.smallest_drone(section)
                if smallest is not None and quota < smallest[1]:
                    self.report(
                        f"{key_path}.quota",
                        f"{quota} cores is less than one drone of {smallest[0]}"
                        f" ({smallest[1]} cores): no drone can ever start",
                        f"raise the quota to at least {smallest[1]}",
                    )

    @staticmethod
    def smallest_drone(section: dict) -> tuple[str, float] | None:
        meta = section.get("MachineMetaData")
        if not isinstance(meta, dict):
            return None
        cores = [
            (name, value["Cores"])
            for name, value in meta.items()
            if isinstance(value, dict) and _is_number(value.get("Cores"))
        ]
        return min(cores, key=lambda item: item[1]) if cores else None

    def report_unknown_keys(self, prefix: str, section: dict, known: Any, adapter: str) -> None:
        """Keys the adapter does not read (None: the adapter is not ours, anything goes)."""
        if not known:
            return
        for key in section:
            if key not in known:
                self.report(
                    f"{prefix}.{key}", f"unknown key for adapter {adapter}", _suggest(key, known)
                )

    def check_site_section(self, name: str, adapter: str, section: dict) -> None:
        prefix = f"tardis.{name}"
        self.report_unknown_keys(prefix, section, SITE_KEYS.get(adapter), adapter)
        executor = section.get("executor")
        if executor is not None:
            if not isinstance(executor, Tagged) or executor.tag not in EXECUTOR_TAGS:
                self.report(
                    f"{prefix}.executor",
                    f"not an executor: {executor!r}",
                    "executor: !TardisShellExecutor {} or !TardisSSHExecutor {...}",
                )
            else:
                self.check_executor(executor, f"{prefix}.executor")
        machine_types = section.get("MachineTypes")
        if not isinstance(machine_types, list) or not machine_types:
            self.report(
                f"{prefix}.MachineTypes",
                "missing or empty",
                "list the machine types: MachineTypes: [small]",
            )
            return
        meta = section.get("MachineMetaData")
        if not isinstance(meta, dict):
            meta = {}
        configs = section.get("MachineTypeConfiguration")
        if not isinstance(configs, dict):
            configs = {}
        site_environment = section.get("JobEnvironment")
        if site_environment is not None and not isinstance(site_environment, dict):
            self.report(
                f"{prefix}.JobEnvironment",
                f"expected a mapping NAME: value, got {site_environment!r}",
                "JobEnvironment: {PILOT_MODE: dask, ...}",
            )
            site_environment = None
        for machine_type in machine_types:
            self.check_machine_type(
                prefix, adapter, str(machine_type), meta, configs, site_environment or {}
            )
        for extra in set(meta) - {str(m) for m in machine_types}:
            self.report(
                f"{prefix}.MachineMetaData.{extra}",
                "not listed in MachineTypes",
                f"add {extra} to MachineTypes or remove its metadata",
            )

    def check_machine_type(
        self,
        prefix: str,
        adapter: str,
        machine_type: str,
        meta: dict,
        configs: dict,
        site_environment: dict,
    ) -> None:
        meta_path = f"{prefix}.MachineMetaData.{machine_type}"
        values = meta.get(machine_type)
        if not isinstance(values, dict):
            self.report(
                meta_path,
                "missing: a machine type without metadata",
                "give Cores, Memory (GB) and Disk (GB) of one drone of this type",
            )
        else:
            for key in META_KEYS:
                if key not in values:
                    self.report(
                        f"{meta_path}.{key}",
                        "missing",
                        f"give {key} ({'cores' if key == 'Cores' else 'GB'})",
                    )
                elif not _is_number(values[key]) or values[key] <= 0:
                    self.report(
                        f"{meta_path}.{key}",
                        f"expected a positive number, got {values[key]!r}",
                        "Cores in cores, Memory and Disk in GB",
                    )
        config_path = f"{prefix}.MachineTypeConfiguration.{machine_type}"
        config = configs.get(machine_type)
        if not isinstance(config, dict):
            if adapter == "Local" and config is None:
                return  # every key has a default
            self.report(
                config_path,
                "missing: a machine type without its configuration",
                "give at least StartupCommand (python -m tardis_sge_dask.pilot --path)",
            )
            return
        self.report_unknown_keys(config_path, config, MACHINE_TYPE_KEYS.get(adapter), adapter)
        startup = config.get("StartupCommand")
        if startup is None and adapter in ("SGE", "SlurmBatch"):
            self.report(
                f"{config_path}.StartupCommand",
                "missing",
                "StartupCommand: the pilot's path (python -m tardis_sge_dask.pilot --path)",
            )
        elif startup is not None:
            why = _readable(str(startup))
            if why:
                self.report_file(
                    f"{config_path}.StartupCommand",
                    f"pilot {startup} {why}",
                    "point it at the installed pilot (python -m tardis_sge_dask.pilot --path)",
                )
        environment = config.get("JobEnvironment")
        if environment is not None and not isinstance(environment, dict):
            self.report(
                f"{config_path}.JobEnvironment",
                f"expected a mapping NAME: value, got {environment!r}",
                "JobEnvironment: {PILOT_MODE: dask, ...}",
            )
        elif isinstance(environment, dict) or site_environment:
            # what the drone gets: the site's settings, overridden by the machine type's
            where = config_path if isinstance(environment, dict) else prefix
            effective = {**site_environment, **(environment or {})}
            self.check_job_environment(where, adapter, effective)

    def check_job_environment(self, config_path: str, adapter: str, environment: dict) -> None:
        mode = environment.get("PILOT_MODE", "dask")
        if mode not in ("dask", "htcondor"):
            self.report(
                f"{config_path}.JobEnvironment.PILOT_MODE",
                f"{mode!r} is neither dask nor htcondor",
                "PILOT_MODE: dask or htcondor",
            )
        needed = {"dask": "PILOT_DASK_SCHEDULER", "htcondor": "PILOT_COLLECTOR"}.get(mode)
        if needed and needed not in environment:
            self.report(
                f"{config_path}.JobEnvironment.{needed}",
                f"missing: PILOT_MODE={mode} needs it (the pilot exits 10 without)",
                "add the scheduler address (dask) or the collector (htcondor)",
            )
        if mode == "htcondor" and "PILOT_TOKEN_FILE" not in environment:
            self.report(
                f"{config_path}.JobEnvironment.PILOT_TOKEN_FILE",
                "missing: the overlay pool admits startds only with an IDTOKEN",
                "PILOT_TOKEN_FILE: the token's path on the worker nodes",
            )
        token = environment.get("PILOT_TOKEN_FILE")
        if token:
            if not os.path.isabs(str(token)):
                self.report(
                    f"{config_path}.JobEnvironment.PILOT_TOKEN_FILE",
                    f"{token} is a relative path; the job starts in another directory",
                    "give the absolute path",
                )
            elif adapter == "Local" and _readable(str(token)):
                # a local drone runs here, so the token must be readable here
                self.report_file(
                    f"{config_path}.JobEnvironment.PILOT_TOKEN_FILE",
                    f"token file {token} {_readable(str(token))}",
                    "create the token (condor_token_create) readable by the daemon's user",
                )

    # ------------------------------------------------------ the adapters' own view
    def build_adapters(self, tardis: dict) -> None:
        """Build every site adapter as the daemon would; report what they reject."""
        from .poolfactory import site_adapter_class

        try:
            install_tardis_configuration(tardis)
        except Exception as err:  # noqa: BLE001 - report, do not crash the checker
            self.report("tardis", f"TARDIS rejects the section: {err}", "see docs/configuration.md")
            return
        for site in tardis["Sites"]:
            adapter_class = site_adapter_class(str(site["adapter"]))
            for machine_type in tardis[site["name"]]["MachineTypes"]:
                try:
                    adapter_class(machine_type=str(machine_type), site_name=site["name"])
                except SiteConfigError as err:
                    self.report(
                        f"tardis.{err.key_path}",
                        err.problem,
                        "see docs/configuration.md for the key",
                    )
                except Exception as err:  # noqa: BLE001
                    self.report(
                        f"tardis.{site['name']}.MachineTypeConfiguration.{machine_type}",
                        f"adapter {site['adapter']} rejects it: {err}",
                        "see docs/configuration.md",
                    )


def check(path: str | Path, check_files: bool = True) -> list[Problem]:
    """Every problem of the configuration file at ``path`` (empty: it is fine).

    ``check_files=False`` skips the files that must exist on the daemon's host (pilot,
    SSH keys, tokens, TLS files, the registry's directory), to check a production
    configuration elsewhere.
    """
    return Checker(path, check_files).run()


__all__ = ["Problem", "check", "plain"]
