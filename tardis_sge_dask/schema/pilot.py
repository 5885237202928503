"""``JobEnvironment``: the ``PILOT_*`` settings a drone's pilot reads (docs/pilot.md).

A job environment is an open mapping — any variable may be handed to the payload — but
a ``PILOT_*`` name the pilot does not know is a typo that would silently fall back to a
default, so those are refused. The rules the pilot enforces at its start (exit 10) are
enforced here, before any drone is submitted.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import Extra, Field, root_validator

from ..pilot.rules import DEFAULT_LIFETIME_MARGIN, walltime_problem
from .base import Section
from .types import ENV_NAME, KeyProblem, control_characters

MODES = ("dask", "htcondor")
#: the setting each mode cannot start without
MODE_NEEDS = {"dask": "PILOT_DASK_SCHEDULER", "htcondor": "PILOT_COLLECTOR"}

__all__ = ["DEFAULT_LIFETIME_MARGIN", "PilotEnvironment", "walltime_problem"]


def _env(default: Any = None, help: str = "", doc_default: str | None = None) -> Any:
    if doc_default is None:
        return Field(default, description=help)
    return Field(default, description=help, doc_default=doc_default)


class PilotEnvironment(Section):
    """The pilot's settings; the values reach the job script as ``export NAME=value``."""

    class Config:
        extra = Extra.allow  # other variables are the payload's business

    PILOT_BATCH_SYSTEM: str | None = _env(help="written by the site adapter", doc_default="`local`")
    PILOT_SITE: str | None = _env(help="written by the site adapter", doc_default="—")
    PILOT_MACHINE_TYPE: str | None = _env(help="written by the site adapter", doc_default="—")
    PILOT_WALLTIME: str | None = _env(help="written from the machine type's Walltime")
    PILOT_MODE: str = _env("dask", "dask or htcondor")
    PILOT_DASK_SCHEDULER: str | None = _env(help="required in dask mode", doc_default="—")
    PILOT_DASK_WORKER_OPTIONS: str | None = _env(
        help="extra dask worker options", doc_default="empty"
    )
    PILOT_DASK_DEATH_TIMEOUT: str = _env("300", "seconds", doc_default="`300`")
    PILOT_PYTHON: str = _env("python3", "the Python with distributed", doc_default="`python3`")
    PILOT_IMAGE_PYTHON: str = _env("python3", "the Python in the image", doc_default="`python3`")
    PILOT_COLLECTOR: str | None = _env(help="required in htcondor mode", doc_default="—")
    PILOT_CCB: str | None = _env(help="CCB broker", doc_default="the collector")
    PILOT_START_EXPRESSION: str | None = _env(
        help="the startd's START", doc_default="Dask-worker jobs only"
    )
    PILOT_IDLE_TIMEOUT: str = _env("600", "seconds", doc_default="`600`")
    PILOT_STARTD_UPDATE_INTERVAL: str | None = _env(
        help="seconds", doc_default="HTCondor's (`300`)"
    )
    PILOT_IMAGE_CONDOR_CONFIG: str = _env(
        "/etc/condor/condor_config",
        "a path in the image",
        doc_default="`/etc/condor/condor_config`",
    )
    PILOT_GPUS: str = _env(
        "0", "GPUs of the batch job", doc_default="`0` (or the count in `CUDA_VISIBLE_DEVICES`)"
    )
    PILOT_LIFETIME_MARGIN: str = _env(
        str(DEFAULT_LIFETIME_MARGIN), "seconds before the walltime", doc_default="`300`"
    )
    PILOT_RETIRE_TIMEOUT: str = _env("30", "seconds", doc_default="`30`")
    PILOT_TOKEN_FILE: str | None = _env(help="an absolute path on the node")
    PILOT_CONTAINER: str = _env("none", "the drone image or none", doc_default="`none`")
    PILOT_CONTAINER_RUNTIME: str = _env("auto", "auto or a command", doc_default="`auto`")
    PILOT_BINDS: str | None = _env(help="extra image binds", doc_default="empty")
    PILOT_CVMFS_REPOSITORIES: str | None = _env(help="repositories", doc_default="empty")
    PILOT_CVMFS_REQUIRED: str = _env("true", "true or false", doc_default="`true`")
    PILOT_CVMFS_ROOT: str = _env("/cvmfs", "where the host mounts CVMFS", doc_default="`/cvmfs`")
    PILOT_CVMFSEXEC: str | None = _env(help="a cvmfsexec distribution directory")
    PILOT_X509_PROXY: str | None = _env(help="path of the X.509 proxy on the node")
    PILOT_CHECK_DISK: str = _env("true", "true or false", doc_default="`true`")
    PILOT_CHECK_GFAL2: str = _env("auto", "auto, true or false", doc_default="`auto`")
    PILOT_GFAL2_PYTHON: str = _env(
        "/usr/bin/python3", "the Python with gfal2", doc_default="`/usr/bin/python3`"
    )
    PILOT_SCRATCH_BASE: str | None = _env(
        help="scratch directory", doc_default="`$TMPDIR`, else `/tmp`"
    )

    @root_validator(pre=True)
    def _names_and_values(cls, values: dict[str, Any]) -> dict[str, Any]:
        return cls.plain_values(values)

    @classmethod
    def plain_values(cls, values: dict[Any, Any]) -> dict[str, str]:
        """Every name a variable name (a known one if ``PILOT_*``), every value one line."""
        known = {field.alias for field in cls.__fields__.values()}
        plain: dict[str, Any] = {}
        for name, value in values.items():
            name = str(name)
            if not ENV_NAME.match(name):
                raise KeyProblem(
                    name,
                    "not a variable name (letters, digits, _; not starting with a digit)",
                    "rename it: the batch system and the job script take only such names",
                )
            if name.startswith("PILOT_") and name not in known:
                raise KeyProblem(name, "unknown pilot setting", _suggestion(name, known))
            text = (
                ""
                if value is None
                else str(value).lower()
                if isinstance(value, bool)
                else str(value)
            )
            if isinstance(value, dict | list):
                raise KeyProblem(
                    name, f"expected a plain value, got {value!r}", "a string or number"
                )
            why = control_characters(text)
            if why:
                raise KeyProblem(name, why, "one line without control characters")
            plain[name] = text
        return plain

    def problems(self) -> list[KeyProblem]:
        """The rules the pilot enforces at its start (exit 10), for the merged settings."""
        values = self.dict()
        found = []
        for rule in (_mode_rule, _token_rule, _margin_rule):
            problem = rule(values)
            if problem is not None:
                found.append(problem)
        return found

    @property
    def lifetime_margin(self) -> int:
        return int(self.PILOT_LIFETIME_MARGIN)


def _mode_rule(values: dict[str, Any]) -> KeyProblem | None:
    mode = values.get("PILOT_MODE") or "dask"
    if mode not in MODES:
        return KeyProblem(
            "PILOT_MODE", f"{mode!r} is neither dask nor htcondor", "PILOT_MODE: dask or htcondor"
        )
    needed = MODE_NEEDS[mode]
    if not values.get(needed):
        return KeyProblem(
            needed,
            f"missing: PILOT_MODE={mode} needs it (the pilot exits 10 without)",
            "add the scheduler address (dask) or the collector (htcondor)",
            pilot_only=True,
        )
    if mode == "htcondor" and not values.get("PILOT_TOKEN_FILE"):
        return KeyProblem(
            "PILOT_TOKEN_FILE",
            "missing: the overlay pool admits startds only with an IDTOKEN",
            "PILOT_TOKEN_FILE: the token's path on the worker nodes",
            pilot_only=True,
        )
    return None


def _token_rule(values: dict[str, Any]) -> KeyProblem | None:
    token = values.get("PILOT_TOKEN_FILE")
    if token and not os.path.isabs(token):
        return KeyProblem(
            "PILOT_TOKEN_FILE",
            f"{token} is a relative path; the job starts in another directory",
            "give the absolute path",
        )
    return None


def _margin_rule(values: dict[str, Any]) -> KeyProblem | None:
    margin = values.get("PILOT_LIFETIME_MARGIN")
    if not str(margin).isdigit():
        return KeyProblem(
            "PILOT_LIFETIME_MARGIN",
            f"expected whole seconds, got {margin!r}",
            "seconds before the walltime at which the drone retires",
        )
    return None


def _suggestion(name: str, known: set[str]) -> str:
    from .validate import suggest

    return suggest(name, sorted(known))
