"""What every demand source reports to the controller, and the base class they share."""

from __future__ import annotations

import abc
from collections import Counter
from dataclasses import dataclass, field

from .packing import JobShape


class DemandSourceError(Exception):
    """The source could not be read this time; the controller keeps its last good value."""


@dataclass
class DemandSnapshot:
    """One reading of the overlay: who waits for a place and who already runs.

    ``waiting`` are the jobs (HTCondor mode) or worker slots (direct mode) that still need
    a drone; ``held`` are reported only, never counted as demand.
    """

    waiting: Counter[JobShape] = field(default_factory=Counter)
    running: int = 0
    held: int = 0
    #: shapes of the running jobs, where the source knows them (HTCondor mode): drones
    #: running them are kept even before TARDIS sees them busy
    running_shapes: Counter[JobShape] = field(default_factory=Counter)
    #: free-form detail for the log line, e.g. per-schedd counts
    detail: str = ""

    @property
    def waiting_jobs(self) -> int:
        return sum(self.waiting.values())

    def summary(self) -> tuple:
        """What a change in the log is about."""
        return (tuple(sorted(self.waiting.items())), self.running, self.held)


class DemandSource(abc.ABC):
    """Reads the demand of one overlay. ``poll`` raises :py:class:`DemandSourceError`
    (or anything else) on failure; the controller catches every exception."""

    @abc.abstractmethod
    async def poll(self) -> DemandSnapshot:
        raise NotImplementedError

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; called when the controller stops."""
