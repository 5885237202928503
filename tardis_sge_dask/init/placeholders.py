"""Placeholders: values only the admin knows, which ``init`` leaves for them to fill.

A placeholder is a string beginning with :data:`MARKER` followed by the question. ``check``
and the daemon's start-up validation name every one left in a file (key path and question),
so a half-filled file never reaches the batch system.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..configfile import Tagged

MARKER = "FILL-IN:"


def placeholder(question: str) -> str:
    return f"{MARKER} {question}"


def find(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """``(key path, question)`` of every placeholder in a loaded document."""
    if isinstance(node, Tagged):
        yield from find(node.value, path)
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from find(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from find(value, f"{path}[{index}]")
    elif isinstance(node, str) and node.startswith(MARKER):
        yield path, node.removeprefix(MARKER).strip()
