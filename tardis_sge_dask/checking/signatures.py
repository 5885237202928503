"""Tags and factories of other packages (COBalD's decorators, ...): checked by signature.

This package's own tags have a schema (:mod:`tardis_sge_dask.registry`); for the rest,
the constructor's parameters are all there is to go by.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from numbers import Real
from typing import Any

from ..schema import suggest
from .problems import Report


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def arguments(
    report: Report, target: Callable, value: Any, key_path: str, skip: tuple[str, ...] = ()
) -> dict[str, inspect.Parameter] | None:
    """Report unknown/missing keyword arguments; the parameters taken, for nested values."""
    if value is None or value == "":
        value = {}
    if not isinstance(value, dict):
        report(
            key_path,
            f"expected a mapping of keyword arguments, got {value!r}",
            "write the keys as a mapping: !Tag {key: value}",
        )
        return None
    try:
        # a class's own __init__: decorators such as cobald's @service wrap __new__
        signature = inspect.signature(target.__init__ if inspect.isclass(target) else target)
    except (TypeError, ValueError):
        return None
    parameters = {
        name: parameter
        for name, parameter in signature.parameters.items()
        if name not in skip and name != "self" and parameter.kind is not parameter.VAR_POSITIONAL
    }
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    named = [name for name, p in parameters.items() if p.kind is not p.VAR_KEYWORD]
    for key, item in value.items():
        if key not in parameters and not takes_any:
            report(f"{key_path}.{key}", "unknown key", suggest(key, named))
            continue
        parameter = parameters.get(key)
        if parameter is not None:
            _value_type(report, parameter, item, f"{key_path}.{key}")
    for name, parameter in parameters.items():
        if (
            parameter.default is parameter.empty
            and parameter.kind is not parameter.VAR_KEYWORD
            and name not in value
            and name != "clock"
        ):
            report(
                f"{key_path}.{name}",
                "missing (required)",
                f"add {name}: ... (docs/configuration.md)",
            )
    return parameters


def _value_type(report: Report, parameter: inspect.Parameter, item: Any, key_path: str) -> None:
    annotation = str(parameter.annotation)
    wants_number = ("float" in annotation or "int" in annotation) and "str" not in annotation
    if wants_number and item is not None and not _is_number(item) and not hasattr(item, "tag"):
        report(key_path, f"expected a number, got {item!r}", "write a plain number")
    elif wants_number and _is_number(item) and item < 0:
        report(key_path, f"must not be negative, got {item!r}", "write a number >= 0")
