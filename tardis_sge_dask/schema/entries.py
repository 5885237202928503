"""``tardis.Sites`` entries: TARDIS's own model, which the daemon applies at every drone.

Reused rather than copied, so ``check`` refuses exactly what TARDIS refuses at start
(``drone_minimum_lifetime: 0``, ``quota: 0``); only what TARDIS lets through but a
batch system cannot take is added (a name with a comma or a line break becomes part of
every job name and ``-v`` list; a quota of 2.5 cores would silently become 2).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import validator
from tardis.interfaces.siteadapter import SiteConfigurationModel

from .types import plain_name


class SiteEntry(SiteConfigurationModel):
    #: TARDIS's model has no help texts; these are the fixes ``check`` prints
    key_help: ClassVar[dict[str, str]] = {
        "name": "the site's name; its section is tardis.<name>",
        "adapter": "SGE, SlurmBatch, Local or one of TARDIS's adapters",
        "quota": "cores all drones of the site may hold together (-1: no limit)",
        "drone_minimum_lifetime": "whole seconds > 0 after which an Available drone is drained",
        "drone_heartbeat_interval": "whole seconds between two status checks of a drone",
    }

    #: the docs' spelling of TARDIS's defaults (quota's is infinity)
    doc_defaults: ClassVar[dict[str, str]] = {"quota": "unlimited"}

    @validator("name", pre=True)
    def _plain_name(cls, value: Any) -> str:
        return plain_name(value)

    @validator("quota", pre=True)
    def _whole_cores(cls, value: Any) -> Any:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value == 0
        ):
            raise ValueError(f"expected a whole number of cores (not 0), got {value!r}")
        return value
