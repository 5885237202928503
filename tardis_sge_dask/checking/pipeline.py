"""The ``pipeline`` section: a controller first, the package's pool factory last, and
every ``!Tag`` in it — the package's own against their schema, others by signature."""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from ..configfile import Tagged
from ..registry import SITE_ADAPTERS, TAGS
from ..schema import suggest, validate
from ..schema.types import EXECUTOR_TAGS
from . import hostfiles, signatures
from .problems import Report

POOL_FACTORY = "tardis_sge_dask.poolfactory.create_composite_pool"


def yaml_tags() -> dict[str, str]:
    """Every ``!Tag`` COBalD knows: tag name -> "module:object"."""
    return {ep.name: ep.value for ep in entry_points(group="cobald.config.yaml_constructors")}


def load_reference(reference: str) -> Any:
    module, _, name = reference.replace(":", ".").rpartition(".")
    return getattr(import_module(module), name)


class PipelineCheck:
    def __init__(self, report: Report):
        self.report = report
        self.tags = yaml_tags()

    def pipeline(self, pipeline: Any) -> None:
        report = self.report
        if not isinstance(pipeline, list) or len(pipeline) < 2:
            report(
                "pipeline",
                "expected a list: a controller first, the pool factory last",
                f"pipeline: [!DaskDemandController {{...}}, {{__type__: {POOL_FACTORY}}}]",
            )
            return
        for index, element in enumerate(pipeline):
            key_path = f"pipeline[{index}]"
            if isinstance(element, Tagged):
                self.tagged(element, key_path)
            elif isinstance(element, dict) and "__type__" in element:
                self.type_reference(element, key_path)
            else:
                report(
                    key_path,
                    f"neither a !Tag nor a __type__ mapping: {element!r}",
                    "write a controller/decorator as !Tag {...} or a factory as"
                    " {__type__: module.function}",
                )
        last = pipeline[-1]
        if isinstance(last, dict) and str(last.get("__type__")).startswith(
            "tardis.resources.poolfactory"
        ):
            report(
                f"pipeline[{len(pipeline) - 1}].__type__",
                f"TARDIS's own pool factory does not know adapter: {'/'.join(SITE_ADAPTERS)}",
                f"use __type__: {POOL_FACTORY}",
            )

    def tagged(self, element: Tagged, key_path: str) -> None:
        if element.tag not in self.tags:
            self.report(
                key_path, f"unknown tag !{element.tag}", suggest(element.tag, sorted(self.tags))
            )
            return
        where = f"{key_path} (!{element.tag})"
        value = {} if element.value in (None, "") else element.value
        if element.tag in TAGS:
            _, findings = validate(TAGS[element.tag].schema, value, where)
            self.report.findings(findings)
        else:
            try:
                target = load_reference(self.tags[element.tag])
            except (ImportError, AttributeError) as err:
                self.report(
                    key_path,
                    f"!{element.tag} cannot be imported ({err})",
                    "reinstall the package: pip install -e .",
                )
                return
            signatures.arguments(self.report, target, value, where, skip=("target",))
        if element.tag in EXECUTOR_TAGS:
            hostfiles.executor(self.report, element, key_path)
        if isinstance(value, dict):
            if element.tag == "DaskSchedulerDemand":
                hostfiles.security(self.report, value.get("security"), f"{where}.security")
            for key, item in value.items():
                if isinstance(item, Tagged):
                    self.tagged(item, f"{where}.{key}")

    def type_reference(self, element: dict, key_path: str) -> None:
        reference = str(element["__type__"])
        try:
            target = load_reference(reference)
        except (ImportError, AttributeError, ValueError):
            self.report(
                f"{key_path}.__type__",
                f"{reference!r} cannot be imported",
                f"use __type__: {POOL_FACTORY}",
            )
            return
        arguments = {key: value for key, value in element.items() if key != "__type__"}
        # COBalD passes a decorator its target (the next element) itself
        skip = ("configuration", "target")
        signatures.arguments(self.report, target, arguments, key_path, skip=skip)
