"""Reading a COBalD/TARDIS YAML file without running anything in it.

``python -m cobald.daemon`` builds every ``!Tag`` while it loads (controllers, executors,
...). The admin commands (``check``, ``render``, ``status``, ``demo``) must read the same
file offline, so here a tag is kept as a :class:`Tagged` value: its name and its plain
content. Such a document can also be written back (``demo`` writes a copy with its own
addresses).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from tardis.utilities.attributedict import AttributeDict


class ConfigFileError(ValueError):
    """The file cannot be read or is not YAML."""


@dataclass
class Tagged:
    """A ``!Tag`` node: ``tag`` without the ``!``, ``value`` its mapping/list/scalar."""

    tag: str
    value: Any

    def get(self, key: str, default: Any = None) -> Any:
        return self.value.get(key, default) if isinstance(self.value, dict) else default


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names a key twice; YAML lets the last one win without a word."""


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        # The daemon's loader keeps the last of two equal keys: a second idefix entry
        # silently sent idefix drones to obelix.q. Refuse it here, where check and the
        # daemon's start-up validation read the file.
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:
                    continue  # an unhashable key: construct_mapping reports it
                if first is not key_node:
                    raise DuplicateKeyError(
                        None,
                        None,
                        f"duplicate key {key!r} (first at line {first.start_mark.line + 1})",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


def _construct_tagged(loader: _Loader, suffix: str, node: yaml.Node) -> Tagged:
    if isinstance(node, yaml.MappingNode):
        value: Any = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    else:  # YAML has no fourth kind of node
        raise TypeError(f"not a YAML node: {node!r}")
    return Tagged(suffix, value)


_Loader.add_multi_constructor("!", _construct_tagged)


class _Dumper(yaml.SafeDumper):
    pass


def _represent_tagged(dumper: _Dumper, data: Tagged) -> yaml.Node:
    tag = f"!{data.tag}"
    if isinstance(data.value, dict):
        return dumper.represent_mapping(tag, data.value)
    if isinstance(data.value, list):
        return dumper.represent_sequence(tag, data.value)
    return dumper.represent_scalar(tag, "" if data.value is None else str(data.value))


_Dumper.add_representer(Tagged, _represent_tagged)


def load(path: str | Path) -> Any:
    """The document of ``path`` with tags kept as :class:`Tagged`."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigFileError(f"{path}: cannot read the file: {err.strerror}") from err
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigFileError(f"{path}: not valid YAML{where}: {problem}") from err


def dump(document: Any) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False)


def tardis_section(document: Any) -> dict | None:
    """The TARDIS part: ``tardis:`` of a unified file, or a separate tardis.yml itself."""
    if not isinstance(document, dict):
        return None
    if isinstance(document.get("tardis"), dict):
        return document["tardis"]
    if "Sites" in document:
        return document
    return None


def plain(value: Any) -> Any:
    """Tags dropped to ``None``: what an adapter may be built from without side effects."""
    if isinstance(value, Tagged):
        return None
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def install_tardis_configuration(section: dict) -> None:
    """Make ``section`` TARDIS's configuration (the Configuration borg) in this process."""
    from tardis.configuration.configuration import Configuration

    Configuration._shared_state.clear()
    Configuration().update_config(plain(section))


def as_attribute_dict(value: Any) -> Any:
    if isinstance(value, dict):
        return AttributeDict({key: as_attribute_dict(item) for key, item in value.items()})
    return value
