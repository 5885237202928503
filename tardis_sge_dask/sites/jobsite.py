"""The layer every site adapter of this package shares: settings, job script, stopping.

A drone of any adapter here is the same job script (the pilot behind its ``export``
lines); how it is started differs. This layer reads the site's section through its
schema, renders the job script and the submission ``render`` shows, and maps failures to
the exceptions TARDIS survives (docs/maintainers.md, "What TARDIS survives"). The
batch-command layer (:class:`~.batchsite.BatchSiteAdapter`) adds the executor, listings
and accounting; the Local adapter (:mod:`.local`) runs the job script as a process instead.
"""

from __future__ import annotations

import functools
import logging
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

from tardis.exceptions.executorexceptions import CommandExecutionFailure
from tardis.exceptions.tardisexceptions import (
    TardisAuthError,
    TardisDroneCrashed,
    TardisQuotaExceeded,
    TardisResourceStatusUpdateFailed,
    TardisTimeout,
)
from tardis.interfaces.siteadapter import SiteAdapter
from tardis.utilities.attributedict import AttributeDict

from ..schema.sites import SiteSection
from .jobscript import JobScriptError, render_job_script
from .settings import MachineTypeSettings, SiteConfigError, SiteSettings, validated_section
from .values import control_character_problem, control_character_problems

logger = logging.getLogger("cobald.runtime.tardis_sge_dask.sites")

#: what TARDIS's ShutDownState and CleanupState do not catch, though it only means "not now"
_NOT_CAUGHT_WHEN_STOPPING = (TardisAuthError, TardisTimeout, TardisQuotaExceeded)

_Removal = Callable[[Any, AttributeDict], Awaitable[None]]


def retried_when_stopping(method: _Removal) -> _Removal:
    """Map failures TARDIS's shutdown and cleanup states would let through to a retry.

    Those states catch only TardisResourceStatusUpdateFailed (and TardisDroneCrashed), and
    any other exception leaving a drone state stops the whole daemon (docs/maintainers.md,
    "What TARDIS survives"): a failed MFA prompt of an SSH executor (TardisAuthError)
    while removing one drone must not end every drone's management.
    """

    @functools.wraps(method)
    async def removal(self: JobScriptSiteAdapter, resource_attributes: AttributeDict) -> None:
        try:
            await method(self, resource_attributes)
        except _NOT_CAUGHT_WHEN_STOPPING as err:
            logger.warning(
                "%s: %s failed (%s: %s), will retry",
                self.describe(resource_attributes),
                method.__name__,
                type(err).__name__,
                err,
            )
            raise TardisResourceStatusUpdateFailed(f"{method.__name__}: {err!r}") from err

    removal.retried_when_stopping = True  # type: ignore[attr-defined]
    return removal


class JobScriptSiteAdapter(SiteAdapter):
    """Settings from the schema, the drone's job script, failures TARDIS survives."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # a dialect's own stop or terminate gets the same mapping as the base's
        for name in ("stop_resource", "terminate_resource"):
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "retried_when_stopping", False):
                setattr(cls, name, retried_when_stopping(method))

    #: name used in logs and in ``PILOT_BATCH_SYSTEM``
    batch_system: ClassVar[str]
    #: the keys of the site's section (and of its machine types): defaults, types, rules
    schema: ClassVar[type[SiteSection]]
    #: the machine-type key that names the queue/partition
    queue_key: ClassVar[str] = "Queue"
    #: errors that only mean "not now": logged in one line and retried, no traceback
    expected_errors: ClassVar[tuple[type[Exception], ...]] = (JobScriptError,)

    def __init__(self, machine_type: str, site_name: str):
        self._machine_type = machine_type
        self._site_name = site_name
        configuration = self.configuration
        #: the site's section and this machine type's keys, as the schema reads them
        self.site_config = validated_section(self.schema, site_name, configuration)
        machine_config = self.site_config.machine_type(machine_type)
        if machine_config is None or machine_type not in self.site_config.MachineTypes:
            raise SiteConfigError(
                f"{site_name}.MachineTypes",
                f"has no machine type {machine_type!r}: list it, with its MachineMetaData"
                " and MachineTypeConfiguration",
            )
        self.machine_config = machine_config
        self.site_settings = SiteSettings.from_schema(self.site_config)
        self.settings = MachineTypeSettings.from_schema(
            machine_config,
            f"{site_name}.MachineTypeConfiguration.{machine_type}",
            queue_key=self.queue_key,
        )
        self.check_settings()
        self.refuse_control_characters(configuration)

    def refuse_control_characters(self, configuration: Any) -> None:
        """Refuse, at start, every value that would smuggle lines into a job script."""
        for key_path, value in (
            (f"{self.site_name}.MachineTypes", self.machine_type),
            (f"{self.site_name} (site name)", self.site_name),
        ):
            problem = control_character_problem(value)
            if problem:
                raise SiteConfigError(key_path, f"{value!r} {problem}")
        for key_path, problem in control_character_problems(self.site_name, configuration):
            raise SiteConfigError(key_path, problem)

    def check_settings(self) -> None:  # optional hook
        """Read the adapter's own keys from ``self.machine_config`` (validated already)."""

    @abstractmethod
    def submit_command(self, drone_uuid: str, environment: Mapping[str, str]) -> list[str]:
        """argv that starts the job script (read from stdin, or from a file)."""

    def pilot_environment(self) -> dict[str, str]:
        """The ``export`` lines at the top of every job script of this machine type."""
        environment = {
            "PILOT_BATCH_SYSTEM": self.batch_system,
            "PILOT_SITE": self.site_name,
            "PILOT_MACHINE_TYPE": self.machine_type,
        }
        if self.settings.walltime:
            environment["PILOT_WALLTIME"] = str(self.settings.walltime)
        environment.update(self.site_settings.job_environment)
        environment.update(self.settings.job_environment)
        return environment

    def job_script(self, drone_uuid: str) -> str:
        return render_job_script(
            self.settings.startup_command,
            self.pilot_environment(),
            header=f"tardis-sge-dask drone {drone_uuid} "
            f"(site {self.site_name}, machine type {self.machine_type})",
        )

    def drone_variables(self, resource_attributes: AttributeDict) -> dict[str, str]:
        """``TardisDrone*`` variables in the overlay batch system's units."""
        environment = self.drone_environment(
            resource_attributes.drone_uuid,
            resource_attributes.obs_machine_meta_data_translation_mapping,
        )
        variables = {}
        for key, value in environment.items():
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            variables[f"TardisDrone{key}"] = str(value)
        return variables

    def render_submission(self, resource_attributes: AttributeDict) -> tuple[list[str], str]:
        """The exact argv and job script a drone gets (also used by ``render``)."""
        drone_uuid = resource_attributes.drone_uuid
        argv = self.submit_command(drone_uuid, self.drone_variables(resource_attributes))
        # the settings were checked at start; this also covers what TARDIS supplies
        for argument in argv:
            problem = control_character_problem(argument)
            if problem:
                raise JobScriptError(f"submit command argument {argument!r} {problem}")
        return argv, self.job_script(drone_uuid)

    def describe(self, resource_attributes: AttributeDict) -> str:
        job = resource_attributes.get("remote_resource_uuid")
        return (
            f"drone {resource_attributes.get('drone_uuid')} ({self.site_name}/"
            f"{self.machine_type}, {self.batch_system} job {job})"
        )

    @contextmanager
    def handle_exceptions(self) -> Iterator[None]:
        # Only the TARDIS exceptions below leave a drone's state alive; anything else
        # aborts the whole daemon (docs/maintainers.md, "What TARDIS survives"), so
        # everything unexpected is retried.
        try:
            yield
        except (
            TardisAuthError,
            TardisTimeout,
            TardisQuotaExceeded,
            TardisResourceStatusUpdateFailed,
            TardisDroneCrashed,
        ):
            raise
        except TimeoutError as err:
            raise TardisTimeout(str(err)) from err
        except CommandExecutionFailure as failure:
            logger.warning(
                "%s: command failed with exit code %s: %s",
                self.site_name,
                failure.exit_code,
                (failure.stderr or failure.stdout or "").strip()[:500],
            )
            raise TardisResourceStatusUpdateFailed(str(failure)) from failure
        except self.expected_errors as err:
            logger.warning("%s: %s", self.site_name, err)
            raise TardisResourceStatusUpdateFailed(str(err)) from err
        except Exception as err:  # see the comment above
            logger.exception("%s: unexpected error, will retry", self.site_name)
            raise TardisResourceStatusUpdateFailed(repr(err)) from err
