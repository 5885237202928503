"""Which configuration values may reach a job script or a batch system's command line.

A line break in a value that lands in a Grid Engine job script starts a new line, and
qsub reads every line beginning with ``#$`` as options (``-t 1-1000``,
``-v LD_PRELOAD=...``); ``shlex.quote`` keeps raw line breaks inside its quotes. A NUL
ends a C string early, a carriage return or an escape sequence hides text in logs and
terminals. No setting of a drone needs any of them, so every value is refused whole,
with its key named, rather than escaped.

Kept free of the adapters and of ``check`` so that both can call it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Mapping
from typing import Any

#: Unicode categories refused: controls (C0, DEL, C1 incl. NEL) and the line/paragraph
#: separators that ``str.splitlines`` and some editors treat as line breaks
_REFUSED_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})

#: keys not walked: the executor is a built object that never reaches a job script, and
#: machine-type names are checked as names (by the adapter for its own, by ``check``)
_NOT_WALKED = frozenset({"executor", "MachineTypes"})


def control_character(text: str) -> str | None:
    """The first refused character of ``text`` spelt for a message (``'\\n'``), or None."""
    for char in text:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            return repr(char)
    return None


def control_character_problem(text: str) -> str | None:
    """Why ``text`` cannot go into a job script or onto a command line, or None."""
    char = control_character(text)
    if char is None:
        return None
    return (
        f"contains the control character {char}: a value reaching a job script or a"
        " command line must be one line of printable text"
    )


def control_character_problems(key_path: str, value: Any) -> Iterator[tuple[str, str]]:
    """(key path, problem) for every string inside ``value`` holding a control character.

    Mapping keys and machine-type names are not looked at: names are checked where they
    are validated as names.
    """
    if isinstance(value, str):
        problem = control_character_problem(value)
        if problem:
            yield key_path, problem
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if key not in _NOT_WALKED:
                yield from control_character_problems(f"{key_path}.{key}", item)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from control_character_problems(f"{key_path}[{index}]", item)
