"""What every schema section shares: strict keys, and the metadata the docs are checked against.

Each field carries its one-line help (``description``) and, where the default is not a
plain value (the host's CPUs, the installed pilot), the text the docs show for it
(``doc_default``). :func:`documented_default` is the one spelling of a default that
``docs/configuration.md`` must contain.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Extra
from pydantic.fields import ModelField

REQUIRED = "— (required)"


class Section(BaseModel):
    """A configuration mapping whose keys are all known: anything else is a typo."""

    class Config:
        extra = Extra.forbid
        allow_population_by_field_name = True
        arbitrary_types_allowed = True
        # keep what the file says: the adapters read the raw section, too
        copy_on_model_validation = "none"


def documented_default(model: type[BaseModel], key: str) -> str:
    """The default of ``key`` as the docs' "default" column writes it."""
    if key in getattr(model, "doc_defaults", {}):
        return model.doc_defaults[key]  # type: ignore[attr-defined]
    field = keys(model)[key]
    if "doc_default" in field.field_info.extra:
        return str(field.field_info.extra["doc_default"])
    if field.required:
        return REQUIRED
    default: Any = field.get_default()
    if default is None:
        return "unset"
    if isinstance(default, str):
        return f"`{default}`"
    return f"`{json.dumps(default)}`"


def keys(model: type[BaseModel]) -> dict[str, ModelField]:
    """The configuration keys of a section (aliases, as written in the file)."""
    return {field.alias: field for field in model.__fields__.values()}


def help_of(model: type[BaseModel], key: str) -> str:
    if key in getattr(model, "key_help", {}):
        return model.key_help[key]  # type: ignore[attr-defined]
    field = keys(model).get(key)
    return field.field_info.description or "" if field is not None else ""
