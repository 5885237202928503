"""The daemon refuses a broken configuration at start, with ``check``'s one-line messages.

``python -m cobald.daemon FILE`` builds the package's ``!Tags`` while it reads FILE and
calls the pool factory afterwards; either is the first code of this package to run, so
both call :func:`validate_daemon_configuration`. It validates FILE once against the
schemas (the same :func:`~tardis_sge_dask.check.schema_problems` ``check`` runs); on a
problem it prints each as one line and ends the daemon with a non-zero exit code, without
the tracebacks COBalD's runtime prints for anything that leaves it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

from .sites.settings import SiteConfigError, configuration_file

#: the exit code of a daemon refusing its configuration (the shell's "usage" code)
EXIT_CONFIGURATION = 2

_validated: set[str] = set()


def daemon_configuration_file() -> str | None:
    """The YAML file of ``python -m cobald.daemon FILE`` (``cobald FILE``), else None."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    in_daemon = (spec is not None and spec.name.startswith("cobald.daemon")) or (
        os.path.basename(sys.argv[0]) == "cobald"
    )
    return configuration_file() if in_daemon else None


def refuse(lines: list[str]) -> NoReturn:
    """Print the problems and end the daemon process at once.

    COBalD's runtime logs whatever leaves a payload, ``SystemExit`` included, with its
    traceback (twice, and asyncio a third time), burying the message. At start nothing
    has been started yet — no drone, no registry write, no child process — so the
    process ends here, after flushing what was printed.
    """
    print("\n".join(lines), file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_CONFIGURATION)


def validate_daemon_configuration(path: str | Path | None = None) -> None:
    """In the daemon (or for ``path``): refuse the configuration file if it has problems."""
    from .check import schema_problems

    path = str(path) if path is not None else daemon_configuration_file()
    if path is None or path in _validated:
        return
    _validated.add(path)
    problems = schema_problems(path)
    if problems:
        refuse([*map(str, problems), f"{len(problems)} problem(s) in {path}; daemon not started"])


def refuse_site_config_error(err: SiteConfigError) -> None:
    """An adapter's own refusal at start, as one line like ``check``'s."""
    if daemon_configuration_file() is None:
        raise err
    where = err.config_file or daemon_configuration_file()
    refuse([f"{where}: tardis.{err.key_path}: {err.problem}. Fix: see docs/configuration.md"])
