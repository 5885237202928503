"""The package's YAML tags as COBalD builds them: the configuration is validated first.

COBalD builds a ``!Tag`` while it reads the file, before any section plugin or the pool
factory runs; a typo in ``!DaskDemandController {intervall: 5}`` would otherwise end the
daemon in a TypeError traceback. setup.py registers these constructors
(``cobald.config.yaml_constructors``); each validates the whole file once
(:mod:`tardis_sge_dask.startup`) and then builds the class the registry names, with the
class's own YAML settings (``eager``: whether nested values are complete when it is built).
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from cobald.daemon.plugins import YAMLTagSettings

from .registry import TAGS
from .startup import validate_daemon_configuration


def _validating(name: str, build: Callable[..., Any]) -> Callable[..., Any]:
    def construct(*args: Any, **kwargs: Any) -> Any:
        validate_daemon_configuration()
        return build(*args, **kwargs)

    construct.__name__ = construct.__qualname__ = name
    YAMLTagSettings.fetch(build).mark(construct)
    return construct


def _controller_tag(name: str) -> SimpleNamespace:
    """COBalD takes a controller's ``.s``: a partial, bound to the pool later."""
    return SimpleNamespace(s=_validating(name, TAGS[name].load().s))


def _object_tag(name: str) -> Callable[..., Any]:
    return _validating(name, TAGS[name].load())


DaskDemandController = _controller_tag("DaskDemandController")
StaticDemand = _controller_tag("StaticDemand")
DaskSchedulerDemand = _object_tag("DaskSchedulerDemand")
CondorQueueDemand = _object_tag("CondorQueueDemand")
