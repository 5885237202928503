"""A section checked against its schema: every problem as (key path, problem, fix).

pydantic reports a location and a message; here that becomes the line ``check`` and the
daemon print: the full key path, our wording for an unknown or missing key (with the
nearest known key), and the field's help as the fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic.error_wrappers import ErrorWrapper
from pydantic.errors import ExtraError, MissingError
from pydantic.fields import ModelField

from .base import help_of, keys
from .types import KeyProblem

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Finding:
    key_path: str
    problem: str
    fix: str
    #: see :attr:`KeyProblem.pilot_only`
    pilot_only: bool = False


def suggest(name: Any, known: Iterable[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
    listing = ", ".join(known)
    return f"did you mean {close[0]!r}? Known: {listing}" if close else f"known: {listing}"


def join(prefix: str, *parts: Any) -> str:
    path = prefix
    for part in parts:
        if part in ("__root__", "__key__"):
            continue
        path = f"{path}.{part}" if path else str(part)
    return path


def _flatten(errors: Iterable[Any], loc: tuple = ()) -> Iterator[tuple[tuple, Exception]]:
    for error in errors:
        if isinstance(error, ErrorWrapper):
            here = loc + error.loc_tuple()
            if isinstance(error.exc, ValidationError):
                yield from _flatten(error.exc.raw_errors, here)
            else:
                yield here, error.exc
        elif isinstance(error, list | tuple):
            yield from _flatten(error, loc)


def _model_at(schema: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model whose key is the last element of ``loc``."""
    model: type[BaseModel] | None = schema
    for part in loc[:-1]:
        if model is None:
            return None
        field = keys(model).get(str(part))
        if field is None:
            continue  # a name of a mapping (a machine type, ...)
        model = _inner_model(field)
    return model


def _inner_model(field: ModelField) -> type[BaseModel] | None:
    """The model a field holds, through Optional, dict and list."""
    inner = field.type_
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        return inner
    for sub_field in field.sub_fields or ():
        found = _inner_model(sub_field)
        if found is not None:
            return found
    return None


def findings(
    schema: type[BaseModel], error: ValidationError, prefix: str, owner: str = ""
) -> list[Finding]:
    """``owner`` names what does not know an unknown key ("adapter SGE")."""
    found = []
    for loc, exc in _flatten(error.raw_errors):
        model = _model_at(schema, loc)
        key = str(loc[-1]) if loc else ""
        if isinstance(exc, KeyProblem):
            found.append(Finding(join(prefix, *loc, exc.key), exc.problem, exc.fix))
        elif isinstance(exc, ExtraError):
            known = list(keys(model)) if model is not None else []
            found.append(
                Finding(
                    join(prefix, *loc),
                    f"unknown key for {owner}" if owner else "unknown key",
                    suggest(key, known),
                )
            )
        elif isinstance(exc, MissingError):
            hint = help_of(model, key) if model is not None else ""
            found.append(
                Finding(
                    join(prefix, *loc),
                    "missing (required)",
                    f"add {key}: {hint}" if hint else f"add {key} (docs/configuration.md)",
                )
            )
        else:
            hint = help_of(model, key) if model is not None else ""
            found.append(
                Finding(
                    join(prefix, *loc),
                    str(exc),
                    f"{key}: {hint}" if hint else "see docs/configuration.md",
                )
            )
    return found


def validate(
    schema: type[M], data: Any, prefix: str, owner: str = ""
) -> tuple[M | None, list[Finding]]:
    """The validated section (None if invalid) and every problem, rules between keys too."""
    if not isinstance(data, dict):
        problem = f"expected a mapping, got {data!r}"
        return None, [Finding(prefix, problem, "see docs/configuration.md")]
    try:
        model = schema.parse_obj(data)
    except ValidationError as error:
        return None, findings(schema, error, prefix, owner)
    except KeyProblem as problem:
        return None, [Finding(join(prefix, problem.key), problem.problem, problem.fix)]
    rules = getattr(model, "problems", None)
    extra = [
        Finding(join(prefix, problem.key), problem.problem, problem.fix, problem.pilot_only)
        for problem in (rules() if callable(rules) else [])
    ]
    return model, extra
