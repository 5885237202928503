"""The job script a drone gets: the pilot, preceded by its settings.

Grid Engine spools the job script and the node shares no filesystem with the submit
host, so everything the pilot needs travels inside the script. Settings go into the
script as ``export`` lines rather than onto the ``qsub``/``sbatch`` command line: the
command line and ``-v`` variables are visible to every user through ``qstat -j``.

qsub reads every line of the script that begins with ``#$`` as options, so no value may
begin a line: each sits inside a quoted assignment on a line that begins with the fixed
text ``export NAME=``, and a value holding a line break (which ``shlex.quote`` would keep
inside its quotes) is refused rather than written.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from .values import control_character_problem

_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class JobScriptError(ValueError):
    """A setting cannot be turned into a job script."""


def render_job_script(
    pilot: str | Path,
    environment: Mapping[str, object],
    *,
    header: str = "",
) -> str:
    """Return the script text: a bash shebang, ``export`` lines, then the pilot body.

    ``pilot`` is the path of the StartupCommand on the daemon host; its own shebang is
    dropped because the first line must stay ``#!/bin/bash`` for both batch systems.
    """
    pilot_path = Path(pilot)
    try:
        body = pilot_path.read_text()
    except OSError as err:
        raise JobScriptError(f"cannot read StartupCommand {pilot_path}: {err.strerror}") from err
    except ValueError as err:  # a NUL byte: no such path can exist
        raise JobScriptError(f"cannot read StartupCommand {str(pilot_path)!r}: {err}") from err
    lines = body.splitlines()
    if lines and lines[0].startswith("#!"):
        lines = lines[1:]
    exports = []
    for name, value in environment.items():
        if not _VARIABLE_NAME.match(name):
            raise JobScriptError(f"{name!r} is not a valid environment variable name")
        problem = control_character_problem(str(value))
        if problem:
            raise JobScriptError(f"job environment {name}: {problem}")
        exports.append(f"export {name}={shlex.quote(str(value))}")
    problem = control_character_problem(header)
    if problem:
        raise JobScriptError(f"job script header: {problem}")
    parts = ["#!/bin/bash"]
    if header:
        parts.append(f"# {header}")
    parts.extend(exports)
    parts.extend(lines)
    return "\n".join(parts) + "\n"
