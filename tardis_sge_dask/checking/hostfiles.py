"""Files that must exist on the daemon's host: only ``check`` looks at them.

The daemon validates the schema at start, but a configuration is often checked on
another machine than the one it runs on (``check --skip-files``), so these checks are
kept apart from the schema.
"""

from __future__ import annotations

import os
from typing import Any

from ..configfile import Tagged
from .problems import Report

SECURITY_FILES = ("tls_ca_file", "tls_client_cert", "tls_client_key", "tls_cert", "tls_key")


def readable(path: str) -> str | None:
    """Why ``path`` is not a readable file, or None."""
    expanded = os.path.expanduser(str(path))
    if not os.path.exists(expanded):
        return "does not exist"
    if not os.path.isfile(expanded):
        return "is not a file"
    if not os.access(expanded, os.R_OK):
        return "is not readable by this user"
    return None


def registry_directory(report: Report, db_file: str) -> None:
    directory = os.path.dirname(os.path.abspath(os.path.expanduser(db_file)))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        report.host_file(
            "tardis.Plugins.SqliteRegistry.db_file",
            f"directory {directory} does not exist or is not writable",
            "create it for the daemon's user, or point db_file elsewhere",
        )


def security(report: Report, value: Any, key_path: str) -> None:
    if not isinstance(value, dict):
        return
    for key in SECURITY_FILES:
        if key in value:
            why = readable(value[key])
            if why:
                report.host_file(
                    f"{key_path}.{key}",
                    f"TLS file {value[key]} {why}",
                    "copy the certificate/key there, readable by the daemon's user",
                )


def executor(report: Report, value: Any, key_path: str) -> None:
    if not isinstance(value, Tagged) or "SSH" not in value.tag:
        return
    settings = value.value if isinstance(value.value, dict) else {}
    if not settings.get("host"):
        report(f"{key_path}.host", "missing", "host: the submit host to reach by SSH")
    keys = settings.get("client_keys") or []
    if isinstance(keys, str):
        keys = [keys]
    for index, key in enumerate(keys):
        why = readable(key)
        if why:
            report.host_file(
                f"{key_path}.client_keys[{index}]",
                f"SSH key {key} {why}",
                "create the key (ssh-keygen -t ed25519) readable only by the daemon's"
                " user, and install its .pub on the submit host",
            )
    known_hosts = settings.get("known_hosts")
    if isinstance(known_hosts, str) and readable(known_hosts):
        report.host_file(
            f"{key_path}.known_hosts",
            f"known_hosts file {known_hosts} {readable(known_hosts)}",
            "ssh-keyscan the submit host into that file",
        )


def pilot(report: Report, startup: Any, key_path: str) -> None:
    why = readable(str(startup))
    if why:
        report.host_file(
            key_path,
            f"pilot {startup} {why}",
            "point it at the installed pilot (python -m tardis_sge_dask.pilot --path)",
        )


def local_token(report: Report, token: str, key_path: str) -> None:
    """A local drone runs on this host, so its token must be readable here."""
    why = readable(token)
    if why:
        report.host_file(
            key_path,
            f"token file {token} {why}",
            "create the token (condor_token_create) readable by the daemon's user",
        )
