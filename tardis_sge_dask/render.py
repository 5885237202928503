"""``tardis-sge-dask render CONFIG --site S --machine-type M``: what a drone would get.

The site adapter is built from the file exactly as the daemon builds it, and the
submission comes from the adapter's own :meth:`render_submission` — the method its
``deploy_resource`` calls — so what is printed is what is submitted. Secrets are masked
in the printed text only.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from tardis.utilities.attributedict import AttributeDict

from .configfile import install_tardis_configuration, load, tardis_section
from .poolfactory import batch_system_adapter_class
from .registry import SITE_ADAPTERS

#: variable or option names whose values are secrets (paths to secrets are not: *_FILE,
#: *_PATH, *_DIR); masking a harmless value costs less than printing a key
_SECRET_NAME = re.compile(
    r"PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|CREDENTIAL|PRIVATE|APIKEY|API_KEY|ACCESS_KEY"
    r"|AUTH|COOKIE|(?:^|_)KEY(?:$|_)|(?:^|_)PEM(?:$|_)",
    re.I,
)
_PATH_NAME = re.compile(r"_(FILE|PATH|DIR|DIRECTORY)$", re.I)
MASK = "********"

#: one shell word as shlex.quote writes it: a value with a single quote becomes several
#: quoted pieces ('it'"'"'s'), all of which are the value
_SHELL_WORD = r"""(?:'[^']*'|"(?:[^"\\]|\\.)*"|[^\s'"])+"""
_ASSIGNMENT = re.compile(rf"(^|[\s'\"])([A-Za-z_][A-Za-z0-9_]*)=({_SHELL_WORD})?", re.M)
#: NAME=value inside one argument: qsub -v and sbatch --export take comma-separated lists
_PAIR = re.compile(r"(^|[,=:'\"\s])([A-Za-z_][A-Za-z0-9_]*)=([^,]*)")
#: user:password@ in a URL
_URL_PASSWORD = re.compile(r"(://[^/\s:@]+:)[^@\s/]+@")


class RenderError(ValueError):
    """The configuration cannot render a drone of that site and machine type."""


@dataclass(frozen=True)
class Rendered:
    site: str
    machine_type: str
    drone_uuid: str
    argv: list[str]
    script: str

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


def is_secret(name: str) -> bool:
    return bool(_SECRET_NAME.search(name)) and not _PATH_NAME.search(name)


def mask(text: str) -> str:
    """``NAME=value`` / ``export NAME=value`` with a secret NAME get their value masked."""

    def replace(match: re.Match) -> str:
        name = match.group(2)
        return f"{match.group(1)}{name}={MASK}" if is_secret(name) else match.group(0)

    return _URL_PASSWORD.sub(rf"\1{MASK}@", _ASSIGNMENT.sub(replace, text))


def mask_argv(argv: list[str]) -> list[str]:
    """The submit command with secrets masked, argument by argument.

    ``ExtraOptions`` are free: a secret may be one pair of a comma-separated list
    (``-v A=1,API_TOKEN=x``), the value of an option named like a secret
    (``--token=x``, ``--password x``) or a password in a URL.
    """
    masked: list[str] = []
    secret_follows = False
    for argument in argv:
        if secret_follows:
            masked.append(MASK)
            secret_follows = False
            continue
        option, equals, _ = argument.partition("=")
        if argument.startswith("-") and is_secret(option.lstrip("-").replace("-", "_")):
            if equals:
                masked.append(f"{option}={MASK}")
            else:
                masked.append(argument)
                secret_follows = True
            continue

        def replace(match: re.Match) -> str:
            name = match.group(2)
            return f"{match.group(1)}{name}={MASK}" if is_secret(name) else match.group(0)

        masked.append(_URL_PASSWORD.sub(rf"\1{MASK}@", _PAIR.sub(replace, argument)))
    return masked


def sample_uuid(site: str) -> str:
    """A drone uuid in TARDIS's format (site name, dash, ten hex digits)."""
    return f"{site.lower()}-0123456789"


def render(
    config: str | Path,
    site: str,
    machine_type: str,
    drone_uuid: str | None = None,
    pilot: str | None = None,
) -> Rendered:
    """What a drone of ``machine_type`` at ``site`` gets; ``pilot`` replaces StartupCommand
    (the configured path exists only on the daemon's host)."""
    document = load(config)
    tardis = tardis_section(document)
    if tardis is None:
        raise RenderError(f"{config}: no tardis section")
    sites = {
        entry.get("name"): entry for entry in tardis.get("Sites") or [] if isinstance(entry, dict)
    }
    if site not in sites:
        raise RenderError(f"{config}: no site {site!r}; sites: {', '.join(map(str, sites))}")
    machine_types = (tardis.get(site) or {}).get("MachineTypes") or []
    if machine_type not in machine_types:
        raise RenderError(
            f"{config}: site {site} has no machine type {machine_type!r};"
            f" machine types: {', '.join(map(str, machine_types))}"
        )
    if pilot is not None:
        machine_types_config = tardis[site].setdefault("MachineTypeConfiguration", {})
        machine_types_config.setdefault(machine_type, {})["StartupCommand"] = pilot
    install_tardis_configuration(tardis)
    entry = SITE_ADAPTERS.get(str(sites[site]["adapter"]))
    if entry is None or not entry.renders_job_script:
        renderers = [name for name, known in SITE_ADAPTERS.items() if known.renders_job_script]
        raise RenderError(
            f"adapter {sites[site]['adapter']} renders nothing;"
            f" render works for {', '.join(renderers)}"
        )
    adapter_class = entry.load()
    adapter = adapter_class(machine_type=machine_type, site_name=site)
    batch_system = tardis.get("BatchSystem") or {}
    overlay = batch_system_adapter_class(str(batch_system.get("adapter")))()
    uuid = drone_uuid or sample_uuid(site)
    argv, script = adapter.render_submission(
        AttributeDict(
            drone_uuid=uuid,
            site_name=site,
            machine_type=machine_type,
            obs_machine_meta_data_translation_mapping=overlay.machine_meta_data_translation_mapping,
        )
    )
    return Rendered(site, machine_type, uuid, list(argv), script)


def format_rendered(rendered: Rendered, show_secrets: bool = False) -> str:
    command = rendered.command if show_secrets else shlex.join(mask_argv(rendered.argv))
    script = rendered.script if show_secrets else mask(rendered.script)
    return (
        f"# drone {rendered.drone_uuid} of site {rendered.site},"
        f" machine type {rendered.machine_type}\n"
        f"# submit command (the job script below is its standard input or file):\n"
        f"{command}\n"
        f"# job script:\n"
        f"{script}"
    )
